// A stand-in for jsDelivr, for browser tests that have no network: a
// Playwright route handler serving the packages installed in node_modules
// at the CDN's URLs, for the demo page's import map to load.
//
//   https://cdn.jsdelivr.net/npm/PKG@VERSION/FILE        the file as published
//   https://cdn.jsdelivr.net/npm/PKG@VERSION[/SUB]/+esm  the module "PKG[/SUB]"
//
// jsDelivr serves a file as it is in the package, bare imports and all.
// Its +esm is a bundle whose own imports are other +esm URLs; here it is
// the module's file (found through the package's "exports", with the
// conditions of a browser) with each import rewritten to such a URL, which
// this handler serves in turn. VERSION must be the one installed, so that
// the page and the lockfile cannot drift apart unnoticed.
import { readFileSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";

const origin = "https://cdn.jsdelivr.net";
const conditions = new Set(["browser", "import", "module", "default"]);

// cdn returns the route handler, and the requests it could not serve
// (which the browser also reports as failed loads).
export function cdn(nodeModules = fileURLToPath(new URL("node_modules/", import.meta.url))) {
  const failures = [];
  const pkg = (name) => {
    const dir = join(nodeModules, name);
    return { dir, json: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) };
  };

  // entry is the file (a path in the package) that the module "name/sub"
  // is, or a file path itself, or null.
  const entry = (p, sub) => {
    if (sub && isFile(join(p.dir, sub))) return sub;
    let exp = p.json.exports;
    if (exp === undefined) return sub || p.json.module || p.json.main || "index.js";
    if (typeof exp === "string" || !Object.keys(exp).some((k) => k.startsWith("."))) exp = { ".": exp };
    const target = pick(exp[sub ? "./" + sub : "."]);
    return target && posix.normalize(target);
  };

  // esmURL is the +esm URL of an import found in the module file of p.
  const esmURL = (p, file, spec) => {
    if (spec.startsWith("./") || spec.startsWith("../")) {
      return `/npm/${p.json.name}@${p.json.version}/${posix.join(posix.dirname(file), spec)}/+esm`;
    }
    if (spec.startsWith("/") || /^[a-z]+:/.test(spec)) return spec;
    const parts = spec.split("/");
    const name = parts.splice(0, spec.startsWith("@") ? 2 : 1).join("/");
    const sub = parts.length ? parts.join("/") + "/" : "";
    return `/npm/${name}@${pkg(name).json.version}/${sub}+esm`;
  };

  const handler = async (route) => {
    const url = new URL(route.request().url());
    const m = /^\/npm\/((?:@[^/]+\/)?[^/@]+)@([^/]+)(?:\/(.*))?$/.exec(url.pathname);
    const fail = (why) => {
      failures.push(`${url.href}: ${why}`);
      return route.fulfill({ status: 404, contentType: "text/plain", body: why, headers: { "Access-Control-Allow-Origin": "*" } });
    };
    if (!m) return fail("not an /npm/PKG@VERSION URL");
    const [, name, version, rest = ""] = m;
    let p;
    try { p = pkg(name); } catch { return fail(`${name} is not in node_modules`); }
    if (p.json.version !== version) return fail(`${name} ${version} asked for, ${p.json.version} installed`);

    const esm = rest === "+esm" || rest.endsWith("/+esm");
    const file = esm ? entry(p, rest.slice(0, -"+esm".length).replace(/\/$/, "")) : posix.normalize(rest);
    if (!file || file.startsWith("..") || !isFile(join(p.dir, file))) return fail("no such file or module");
    let body = readFileSync(join(p.dir, file), "utf8");
    if (esm) {
      // The specifiers of import and export statements and of import().
      // A regular expression, not a parser: enough for these packages.
      body = body.replace(/(\bfrom\s*|\bimport\s*\(?\s*)(["'])([^"'\n]+)\2/g,
        (_, before, q, spec) => before + q + esmURL(p, file, spec) + q);
    }
    return route.fulfill({
      status: 200,
      contentType: /\.m?js$/.test(file) || esm ? "text/javascript; charset=utf-8" : "application/octet-stream",
      body,
      headers: { "Access-Control-Allow-Origin": "*" },
    });
  };
  return { origin, pattern: origin + "/**", handler, failures };
}

// pick resolves a value of an "exports" map: the first target whose
// conditions a browser meets, in the map's order, as Node.js and bundlers do.
function pick(exp) {
  if (typeof exp === "string" || exp == null) return exp;
  if (Array.isArray(exp)) return exp.map(pick).find(Boolean);
  for (const [cond, value] of Object.entries(exp)) {
    if (conditions.has(cond)) {
      const target = pick(value);
      if (target) return target;
    }
  }
  return null;
}

function isFile(path) {
  try { return statSync(path).isFile(); } catch { return false; }
}
