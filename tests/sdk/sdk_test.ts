// The official Cloudflare TypeScript SDK (npm `cloudflare`, the version package-lock.json
// pins) pointed at a running imagegate by its base URL: uploads, listings, reads, an edit and
// a delete, each through the SDK's own method, and after each step the calls the upstream
// (the emulator) received and the budget slots imagegate spent, both exactly as expected.
// Started by sdk_test.py, which runs the servers and passes their addresses:
//   SDK_TEST_GATEWAY   http://127.0.0.1:PORT/client/v4   (the SDK's baseURL)
//   SDK_TEST_ADMIN     http://127.0.0.1:PORT             (imagegate's admin listener)
//   SDK_TEST_EMULATOR  https://localhost:PORT            (its control endpoints)
//   SDK_TEST_CA        the emulator's CA certificate (PEM file)
//   SDK_TEST_ACCOUNT, SDK_TEST_WRITER (a client key granted forward), SDK_TEST_READER (a
//   client key without forward grants), SDK_TEST_SEEDED (images the emulator started with)
// Exit 0 when every check passed, 1 otherwise (each failure printed).
import Cloudflare, {
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    toFile,
} from "cloudflare";
import type { APIError } from "cloudflare";
import type { Image, V1ListResponse } from "cloudflare/resources/images";
import { VERSION } from "cloudflare/version";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import type { IncomingMessage } from "node:http";
import * as https from "node:https";

function env(name: string): string {
    const v = process.env[name];
    if (!v) {
        throw new Error(`${name} is not set (sdk_test.ts is started by sdk_test.py)`);
    }
    return v;
}

const gateway = env("SDK_TEST_GATEWAY");
const admin = env("SDK_TEST_ADMIN");
const emulator = env("SDK_TEST_EMULATOR");
const ca = readFileSync(env("SDK_TEST_CA"));
const account_id = env("SDK_TEST_ACCOUNT");
const seeded = Number(env("SDK_TEST_SEEDED"));

// No retries: every call the SDK makes is one request, so the counts below are exact.
const options = { baseURL: gateway, maxRetries: 0, timeout: 10_000 };
const writer = new Cloudflare({ ...options, apiToken: env("SDK_TEST_WRITER") });
const reader = new Cloudflare({ ...options, apiToken: env("SDK_TEST_READER") });
const stranger = new Cloudflare({ ...options, apiToken: "not-a-client-key-of-this-gateway" });

let failures = 0;
function check(ok: boolean, message: string): boolean {
    if (!ok) {
        failures++;
        console.error(`sdk_test: FAIL: ${message}`);
    }
    return ok;
}

/** The body of a GET to imagegate's admin listener (plain HTTP) or the emulator's control
 * endpoints (TLS, verified against its CA). */
function get_body(url: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const done = (res: IncomingMessage) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => (body += d));
            res.on("end", () => res.statusCode === 200
                ? resolve(body)
                : reject(new Error(`${url}: ${res.statusCode}`)));
        };
        const req = url.startsWith("https:") ? https.get(url, { ca }, done) : http.get(url, done);
        req.on("error", reject);
    });
}

async function emulator_json(path: string): Promise<any> {
    return JSON.parse(await get_body(`${emulator}${path}`));
}

/** The sum of every sample of `name` on imagegate's /metrics. */
function metric(text: string, name: string): number {
    let sum = 0;
    for (const line of text.split("\n")) {
        const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
        if (m && m[1] === name) {
            sum += Number(m[3]);
        }
    }
    return sum;
}

interface Counters {
    upstream: number;  // API calls the emulator received
    budget: number;    // budget slots imagegate spent: granted minus given back unspent
    forwarded: number; // calls imagegate forwarded (answered or not)
    refused: number;   // forwards refused before any upstream call
}

async function counters(): Promise<Counters> {
    const stats = await emulator_json("/__emulator/stats");
    const text = await get_body(`${admin}/metrics`);
    return {
        upstream: Number(stats.requests),
        budget:
            metric(text, "imagegate_budget_reservations_total") -
            metric(text, "imagegate_budget_released_total"),
        forwarded: metric(text, "imagegate_forward_requests_total"),
        refused: metric(text, "imagegate_forward_refused_total"),
    };
}

function since(before: Counters, after: Counters): Counters {
    return {
        upstream: after.upstream - before.upstream,
        budget: after.budget - before.budget,
        forwarded: after.forwarded - before.forwarded,
        refused: after.refused - before.refused,
    };
}

// What the steps expected, added up: the whole run must measure exactly this.
const expected: Counters = { upstream: 0, budget: 0, forwarded: 0, refused: 0 };

/**
 * Runs `f` (SDK calls) and checks that it made exactly `upstream` upstream calls, spent as
 * many budget slots, and that `forwarded` of them were forwards (the rest image reads), and
 * that `refused` forwards were refused.
 */
async function step<T>(
    name: string,
    want: { upstream: number; forwarded: number; refused?: number },
    f: () => Promise<T>,
): Promise<T | undefined> {
    const before = await counters();
    let out: T | undefined;
    try {
        out = await f();
    } catch (e) {
        check(false, `${name}: ${e instanceof Error ? e.stack : String(e)}`);
    }
    const got = since(before, await counters());
    const refused = want.refused ?? 0;
    expected.upstream += want.upstream;
    expected.budget += want.upstream;
    expected.forwarded += want.forwarded;
    expected.refused += refused;
    check(got.upstream === want.upstream,
          `${name}: ${got.upstream} upstream call(s), expected ${want.upstream}`);
    check(got.budget === want.upstream,
          `${name}: the budget moved by ${got.budget}, expected ${want.upstream}`);
    check(got.forwarded === want.forwarded,
          `${name}: ${got.forwarded} forwarded, expected ${want.forwarded}`);
    check(got.refused === refused,
          `${name}: ${got.refused} forward(s) refused, expected ${refused}`);
    console.log(`sdk_test: ${name}: ${got.upstream} upstream call(s), budget +${got.budget}, ` +
                `${got.forwarded} forwarded, ${got.refused} refused`);
    return out;
}

/** Runs `f`, which must throw the SDK error class `cls` with HTTP `status` and error `code`. */
async function expect_error(
    what: string,
    cls: new (...args: any[]) => APIError,
    status: number,
    code: number,
    f: () => Promise<unknown>,
): Promise<APIError | undefined> {
    try {
        await f();
        check(false, `${what}: succeeded, expected ${cls.name} ${status}`);
    } catch (e) {
        if (!check(e instanceof cls, `${what}: threw ${String(e)}, expected ${cls.name}`)) {
            return undefined;
        }
        const err = e as APIError;
        check(err.status === status, `${what}: status ${err.status}, expected ${status}`);
        check(err.errors.some((x) => x.code === code),
              `${what}: errors ${JSON.stringify(err.errors)}, expected code ${code}`);
        return err;
    }
    return undefined;
}

function cache_status(h: { get(name: string): string | null }): string {
    return h.get("cache-status") ?? "";
}

function sha256(b: Buffer): string {
    return createHash("sha256").update(b).digest("hex");
}

// A 1x1 PNG, and 256 KiB of random bytes for the upload with a custom id.
const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ" +
        "RU5ErkJggg==",
    "base64");
const blob = randomBytes(256 * 1024);
// A custom id with slashes: this SDK version sends it as raw path segments.
const custom_id = `sdk-e2e/${randomBytes(4).toString("hex")}/photo`;

async function main(): Promise<void> {
    const start = await counters();

    // Uploads (POST …/images/v1, multipart/form-data): forwarded, answered 200 by the
    // emulator, which saw the file's bytes unchanged.
    const uploaded = await step("upload a file", { upstream: 1, forwarded: 1 }, async () => {
        const { data, response } = await writer.images.v1
            .create({
                account_id,
                file: await toFile(png, "sdk-e2e.png", { type: "image/png" }),
                // The SDK sends a metadata object as metadata[key] parts: pass the JSON text.
                metadata: JSON.stringify({ source: "sdk-e2e" }),
                creator: "sdk-e2e",
            })
            .withResponse();
        check(response.status === 200, `upload: status ${response.status}`);
        check(cache_status(response.headers) === "imagegate; fwd=bypass",
              `upload: Cache-Status "${cache_status(response.headers)}"`);
        check(typeof data.id === "string" && data.id.length === 36,
              `upload: generated id ${JSON.stringify(data.id)}`);
        check(data.filename === "sdk-e2e.png", `upload: filename ${data.filename}`);
        check(JSON.stringify(data.meta) === '{"source":"sdk-e2e"}',
              `upload: meta ${JSON.stringify(data.meta)}`);
        return data;
    });
    const custom = await step("upload with a custom id", { upstream: 1, forwarded: 1 },
                              async () => {
        const image: Image = await writer.images.v1.create({
            account_id,
            id: custom_id,
            file: await toFile(blob, "blob.bin", { type: "application/octet-stream" }),
            requireSignedURLs: false,
        });
        check(image.id === custom_id, `custom upload: id ${image.id}, expected ${custom_id}`);
        check(image.requireSignedURLs === false,
              `custom upload: requireSignedURLs ${image.requireSignedURLs}`);
        return image;
    });
    if (!uploaded?.id || !custom?.id) {
        throw new Error("the uploads failed; nothing more to check");
    }
    const received = (await emulator_json("/__emulator/uploads")).uploads as any[];
    for (const [id, bytes] of [[uploaded.id, png], [custom_id, blob]] as [string, Buffer][]) {
        const u = received.find((x) => x.id === id);
        check(u !== undefined && u.file_bytes === bytes.length && u.file_sha256 === sha256(bytes),
              `the emulator received upload ${id} as ${JSON.stringify(u)}, expected ` +
              `${bytes.length} bytes with SHA-256 ${sha256(bytes)}`);
    }

    // An upload's answer is stored: the next read of its id makes no upstream call.
    await step("get an uploaded image", { upstream: 0, forwarded: 0 }, async () => {
        const { data, response } = await writer.images.v1
            .get(custom_id, { account_id }).withResponse();
        check(data.id === custom_id && data.filename === "blob.bin",
              `get after upload: ${JSON.stringify(data)}`);
        check(cache_status(response.headers).startsWith("imagegate; hit"),
              `get after upload: Cache-Status "${cache_status(response.headers)}"`);
    });

    // Listings: forwarded.
    const v1_ids = await step("images.v1.list", { upstream: 1, forwarded: 1 }, async () => {
        const page = await writer.images.v1.list({ account_id, per_page: 100 });
        // The SDK types this page's result as { items }, but the API (and the SDK's parser)
        // give { images }: read it as the V1ListResponse it is.
        const images = (page.result as unknown as V1ListResponse).images ?? [];
        check(images.length === seeded + 2,
              `v1.list: ${images.length} images, expected ${seeded + 2}`);
        return images.map((i) => i.id ?? "");
    }) ?? [];
    for (const id of [uploaded.id, custom_id]) {
        check(v1_ids.includes(id), `v1.list does not list ${id}`);
    }
    const v2_ids = await step("images.v2.list, two pages", { upstream: 2, forwarded: 2 },
                              async () => {
        const first = await writer.images.v2.list({ account_id, per_page: 10 });
        check(first.images?.length === 10, `v2.list: ${first.images?.length} on page 1`);
        check(typeof first.continuation_token === "string",
              `v2.list: continuation_token ${first.continuation_token}`);
        const second = await writer.images.v2.list({
            account_id,
            per_page: 10,
            continuation_token: first.continuation_token ?? undefined,
        });
        check(second.continuation_token === null,
              `v2.list: page 2 continuation_token ${second.continuation_token}`);
        return [...(first.images ?? []), ...(second.images ?? [])].map((i) => i.id ?? "");
    }) ?? [];
    check(JSON.stringify([...v2_ids].sort()) === JSON.stringify([...v1_ids].sort()),
          `v2.list ${JSON.stringify(v2_ids)} and v1.list ${JSON.stringify(v1_ids)} differ`);

    // A seeded image, never read: a miss (one upstream call, a read, not a forward), then a hit.
    const seeded_id = v1_ids.find((id) => id !== uploaded.id && id !== custom_id) ?? "";
    const first_read = await step("get: a miss", { upstream: 1, forwarded: 0 }, async () => {
        const { data, response } = await writer.images.v1
            .get(seeded_id, { account_id }).withResponse();
        check(/^imagegate; fwd=miss; fwd-status=200; stored/.test(cache_status(response.headers)),
              `miss: Cache-Status "${cache_status(response.headers)}"`);
        return data;
    });
    await step("get: a hit", { upstream: 0, forwarded: 0 }, async () => {
        const { data, response } = await writer.images.v1
            .get(seeded_id, { account_id }).withResponse();
        check(cache_status(response.headers).startsWith("imagegate; hit"),
              `hit: Cache-Status "${cache_status(response.headers)}"`);
        check(JSON.stringify(data) === JSON.stringify(first_read),
              `hit: ${JSON.stringify(data)} differs from the miss's ${JSON.stringify(first_read)}`);
    });

    // Edits (PATCH): forwarded; the cached record becomes the one the upstream returned, so
    // the next read shows it without an upstream call.
    for (const id of [seeded_id, custom_id]) {
        const edited = await step(`edit ${id}`, { upstream: 1, forwarded: 1 }, async () => {
            const image = await writer.images.v1.edit(id, {
                account_id,
                metadata: { edited: "by-sdk", n: 2 },
                creator: "editor",
            });
            check(image.id === id && image.creator === "editor",
                  `edit: ${JSON.stringify(image)}`);
            return image;
        });
        await step(`get ${id} after the edit`, { upstream: 0, forwarded: 0 }, async () => {
            const { data, response } = await writer.images.v1
                .get(id, { account_id }).withResponse();
            check(cache_status(response.headers).startsWith("imagegate; hit"),
                  `get after edit: Cache-Status "${cache_status(response.headers)}"`);
            check(JSON.stringify(data) === JSON.stringify(edited),
                  `get after edit: ${JSON.stringify(data)}, expected ${JSON.stringify(edited)}`);
            check(JSON.stringify(data.meta) === '{"edited":"by-sdk","n":2}',
                  `get after edit: meta ${JSON.stringify(data.meta)}`);
        });
    }
    await step("edit requireSignedURLs", { upstream: 1, forwarded: 1 }, async () => {
        const image = await writer.images.v1.edit(uploaded.id!, {
            account_id,
            requireSignedURLs: true,
        });
        check(image.requireSignedURLs === true, `edit: ${JSON.stringify(image)}`);
    });
    await step("get after the requireSignedURLs edit", { upstream: 0, forwarded: 0 },
               async () => {
        const image = await writer.images.v1.get(uploaded.id!, { account_id });
        check(image.requireSignedURLs === true && image.creator === "sdk-e2e",
              `get after edit: ${JSON.stringify(image)}`);
    });

    // Deletes: forwarded; the next read is the SDK's NotFoundError from imagegate's cache.
    for (const id of [uploaded.id, custom_id]) {
        await step(`delete ${id}`, { upstream: 1, forwarded: 1 }, async () => {
            const { response } = await writer.images.v1.delete(id, { account_id }).withResponse();
            check(response.status === 200, `delete: status ${response.status}`);
        });
        await step(`get ${id} after the delete`, { upstream: 0, forwarded: 0 }, async () => {
            const err = await expect_error(`get ${id} after the delete`, NotFoundError, 404,
                                           5404, () => writer.images.v1.get(id, { account_id }));
            const status = err?.headers?.["cache-status"] ?? "";
            check(status.startsWith("imagegate; hit"),
                  `get after delete: Cache-Status "${status}"`);
        });
    }

    // A key without forward grants reads (from the cache here) but forwards nothing: 403
    // before any upstream call, the budget untouched. An unknown key: 401.
    await step("reader: get", { upstream: 0, forwarded: 0 }, async () => {
        const image = await reader.images.v1.get(seeded_id, { account_id });
        check(image.id === seeded_id, `reader get: ${JSON.stringify(image)}`);
    });
    const refusals = { upstream: 0, forwarded: 0, refused: 5 };
    await step("reader: list, upload, edit, delete refused", refusals, async () => {
        await expect_error("reader v1.list", PermissionDeniedError, 403, 99414,
                           () => reader.images.v1.list({ account_id }));
        await expect_error("reader v2.list", PermissionDeniedError, 403, 99414,
                           () => reader.images.v2.list({ account_id }));
        await expect_error("reader create", PermissionDeniedError, 403, 99414,
                           async () => reader.images.v1.create({
                               account_id,
                               file: await toFile(png, "refused.png", { type: "image/png" }),
                           }));
        await expect_error("reader edit", PermissionDeniedError, 403, 99414,
                           () => reader.images.v1.edit(seeded_id, { account_id, creator: "x" }));
        await expect_error("reader delete", PermissionDeniedError, 403, 99414,
                           () => reader.images.v1.delete(seeded_id, { account_id }));
    });
    await step("unknown key refused", { upstream: 0, forwarded: 0, refused: 1 }, async () => {
        await expect_error("unknown key get", AuthenticationError, 401, 99410,
                           () => stranger.images.v1.get(seeded_id, { account_id }));
        await expect_error("unknown key list", AuthenticationError, 401, 99410,
                           () => stranger.images.v2.list({ account_id }));
    });
    const after_refusals = (await emulator_json("/__emulator/uploads")).uploads as any[];
    check(after_refusals.length === received.length,
          `the emulator recorded ${after_refusals.length - received.length} refused upload(s)`);

    // The whole run, measured once: nothing went upstream between the steps either.
    const all = since(start, await counters());
    check(JSON.stringify(all) === JSON.stringify(expected),
          `the whole run measured ${JSON.stringify(all)}, expected ${JSON.stringify(expected)}`);
    console.log(`sdk_test: cloudflare ${VERSION} on node ${process.version}: ` +
                `${all.upstream} upstream calls (${all.forwarded} forwarded), ` +
                `budget +${all.budget}, ${all.refused} forwards refused, ${failures} failure(s)`);
}

main().then(
    () => process.exit(failures === 0 ? 0 : 1),
    (e) => {
        console.error(`sdk_test: FAIL: ${e instanceof Error ? e.stack : String(e)}`);
        process.exit(1);
    },
);
