#!/bin/sh
# Writes the imagegate(8) man page, gzip-compressed, from the built binary's --help, so the
# page lists exactly the flags and notes of the binary it ships with.
#   imagegate-man.sh BINARY VERSION OUTPUT.8.gz
# --help layout it reads (config/load.cpp, help_text()): a "Usage:" line, a one-line summary,
# "Options ...:" followed by option lines ("  --flag META   text", continuation lines indented
# deeper), then blank-line separated paragraphs; one starting "Exit status:" is its own section.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 BINARY VERSION OUTPUT.8.gz" >&2; exit 2; }
binary=$1 version=$2 output=$3

help=$("$binary" --help)
tmp="$output.tmp"
trap 'rm -f "$tmp"' EXIT

printf '%s\n' "$help" | awk -v version="$version" '
  # roff escaping: backslashes first, then hyphens (so flags render as ASCII minus), and a
  # leading dot or quote, which roff would read as a request.
  function esc(s) {
    gsub(/\\/, "\\e", s)
    gsub(/-/, "\\-", s)
    if (s ~ /^[.\047]/) { s = "\\&" s }
    return s
  }
  BEGIN {
    print ".TH IMAGEGATE 8 \"\" \"imagegate " version "\" \"System Administration\""
    state = "head"
  }
  state == "head" && /^Usage:/ { next }
  state == "head" && /^Options/ {
    print ".SH OPTIONS"
    # "Options (--flag VALUE or --flag=VALUE):": the parenthesis says how values are given.
    if (match($0, /\(.*\)/)) { print esc(substr($0, RSTART + 1, RLENGTH - 2)) "." }
    state = "options"
    next
  }
  state == "head" && NF > 0 {
    summary = $0
    sub(/\.$/, "", summary)
    print ".SH NAME"
    print "imagegate \\- " esc(tolower(substr(summary, 1, 1)) substr(summary, 2))
    print ".SH SYNOPSIS"
    print ".B imagegate"
    print "[\\fIOPTIONS\\fR]"
    print ".SH DESCRIPTION"
    print esc(summary) "."
    print "Settings come from built\\-in defaults, a TOML file (\\fB\\-\\-config\\fR), the"
    print "environment and the flags below; see NOTES."
    next
  }
  state == "options" && /^  -/ {
    line = substr($0, 3)
    # The flag column ends at the first run of two or more spaces.
    split_at = match(line, /  +/)
    if (split_at > 0) {
      flag = substr(line, 1, split_at - 1)
      text = substr(line, split_at + RLENGTH)
    } else {
      flag = line
      text = ""
    }
    print ".TP"
    # Bold flag names, italic metavariables: "--listen HOST:PORT" or "-h, --help".
    n = split(flag, words, " ")
    out = ""
    for (i = 1; i <= n; i++) {
      w = words[i]
      if (w ~ /^-/) { out = out (i > 1 ? " " : "") "\\fB" esc(w) "\\fR" }
      else { out = out " \\fI" esc(w) "\\fR" }
    }
    print out
    if (text != "") { print esc(text) }
    next
  }
  state == "options" && /^    / {
    sub(/^ +/, "")
    print esc($0)
    next
  }
  state == "options" && NF == 0 { state = "notes"; next }
  state == "notes" && NF == 0 { paragraph_open = 0; next }
  state == "notes" {
    if (!paragraph_open) {
      if ($0 ~ /^Exit status:/) {
        print ".SH \"EXIT STATUS\""
        sub(/^Exit status: */, "")
        $0 = toupper(substr($0, 1, 1)) substr($0, 2)
      } else if (!notes_started) {
        print ".SH NOTES"
        notes_started = 1
      } else {
        print ".PP"
      }
      paragraph_open = 1
    }
    print esc($0)
  }
  END {
    if (state != "notes") {
      print "imagegate-man.sh: --help did not have the expected layout" > "/dev/stderr"
      exit 1
    }
    print ".SH SIGNALS"
    print "SIGTERM and SIGINT stop accepting connections, let requests in flight finish for up"
    print "to \\fBserver.drain_timeout\\fR and exit 0."
    print ".SH FILES"
    print ".TP"
    print ".I /etc/imagegate/imagegate.toml"
    print "The configuration read by the systemd unit (mode 640, root:imagegate)."
    print ".TP"
    print ".I /lib/systemd/system/imagegate.service"
    print "The hardened systemd unit; \\fBsystemctl edit imagegate\\fR overrides it."
    print ".TP"
    print ".I /usr/share/doc/imagegate/imagegate.example.toml"
    print "Every configuration key with its default value and meaning."
    print ".SH \"SEE ALSO\""
    print "\\fBsystemctl\\fR(1), \\fBsystemd.exec\\fR(5),"
    print ".I /usr/share/doc/imagegate/README.md"
  }
' >"$tmp.roff"
gzip -9n <"$tmp.roff" >"$tmp"
rm -f "$tmp.roff"
mv "$tmp" "$output"
trap - EXIT
