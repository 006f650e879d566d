// Fails when the committed src/gen differs from what `npm run generate`
// makes from ../../proto now: CI runs it, so the stubs never drift from the
// contract. Run from clients/node (npm run check-generated).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

function files(root) {
  const found = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else found.push(relative(root, path));
    }
  };
  walk(root);
  return found.sort();
}

const fresh = mkdtempSync(join(tmpdir(), "roomcast-node-gen-"));
try {
  execFileSync(
    "node_modules/.bin/buf",
    ["generate", "../../proto", "--template", "buf.gen.yaml", "--output", fresh],
    { stdio: "inherit" },
  );
  const want = join(fresh, "src", "gen");
  const have = join("src", "gen");
  const [wanted, had] = [files(want), files(have)];
  const drift = [
    ...wanted.filter((f) => !had.includes(f)).map((f) => `missing: src/gen/${f}`),
    ...had.filter((f) => !wanted.includes(f)).map((f) => `not generated: src/gen/${f}`),
    ...wanted
      .filter((f) => had.includes(f))
      .filter((f) => !readFileSync(join(want, f)).equals(readFileSync(join(have, f))))
      .map((f) => `differs: src/gen/${f}`),
  ];
  if (drift.length > 0) {
    console.error(drift.join("\n"));
    console.error("clients/node/src/gen drifts from proto/: run `npm run generate` in clients/node");
    process.exit(1);
  }
  console.log("generated Node code matches proto/");
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
