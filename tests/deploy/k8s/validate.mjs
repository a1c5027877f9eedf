// Validates Kubernetes objects against the API's OpenAPI schemas, offline: the schemas are
// compiled into the pinned kubernetes-models package (package-lock.json). Types, formats
// (quantities, ports), enums and required fields are checked; unknown fields are not (the
// API's schemas allow them), which k8s_test.py covers for the fields that matter.
//   node validate.mjs OBJECTS.json    (a JSON array of objects; exit 1 on the first invalid)
import { readFileSync } from "node:fs";

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const [i, object] of objects.entries()) {
    const { apiVersion, kind } = object;
    const name = `${kind}/${object.metadata?.name} (document ${i + 1})`;
    // "apps/v1" -> kubernetes-models/apps/v1/Deployment; core "v1" -> kubernetes-models/v1/...
    const module = `kubernetes-models/${apiVersion}/${kind}`;
    let model;
    try {
        model = (await import(module))[kind];
    } catch (e) {
        console.error(`validate: ${name}: no schema for ${apiVersion} ${kind}`);
        failed++;
        continue;
    }
    try {
        new model(object).validate();
        console.log(`validate: ${name}: valid`);
    } catch (e) {
        console.error(`validate: ${name}: ${e.message}`);
        failed++;
    }
}
process.exit(failed ? 1 : 0);
