#!/usr/bin/env python3
"""The layering of ARCHITECTURE.md, checked: every #include of another project library's
header must name a library the including one links (directly or through others), the
library graph has no cycle, and cache/ and config/ never include gateway/. Run by ctest
(layers_test); exits 1 with the offending includes."""
import glob
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)

folders = {}  # library folder ("gateway/http", "cache") -> its CMakeLists text
for cm in glob.glob("gateway/*/CMakeLists.txt") + ["cache/CMakeLists.txt", "config/CMakeLists.txt"]:
    folders[os.path.dirname(cm)] = open(cm, encoding="utf-8").read()


def lib_of(folder):
    return "imagegate_" + os.path.basename(folder)


deps = {}
for folder, text in folders.items():
    me = lib_of(folder)
    deps[me] = {d for d in re.findall(r"\b(imagegate_\w+)\b", text)
                if d != me and d != "imagegate_add_library" and d != "imagegate_warnings"}

problems = []


def closure(lib, path=()):
    if lib in path:
        problems.append("library cycle: " + " -> ".join(path + (lib,)))
        return set()
    out = set()
    for d in deps.get(lib, ()):
        out.add(d)
        out |= closure(d, path + (lib,))
    return out


reach = {lib: closure(lib) for lib in deps}
folder_of_header = {}
for folder in folders:
    for h in glob.glob(folder + "/*.hpp"):
        folder_of_header[h] = folder

for folder in folders:
    me = lib_of(folder)
    for f in glob.glob(folder + "/*.cpp") + glob.glob(folder + "/*.hpp"):
        for n, line in enumerate(open(f, encoding="utf-8"), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            inc = m.group(1)
            if folder in ("cache", "config") and inc.startswith("gateway/"):
                problems.append(f"{f}:{n}: {folder}/ includes {inc}")
                continue
            other = folder_of_header.get(inc)
            if other is None or other == folder:
                continue
            if lib_of(other) not in reach[me]:
                problems.append(f"{f}:{n}: {me} includes {inc} but does not link {lib_of(other)}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"layers: {len(deps)} libraries, no include against the dependency graph, no cycle")
