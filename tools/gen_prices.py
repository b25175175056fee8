#!/usr/bin/env python3
"""Generate the built-in price table embedded in the gateway.

Input:
  * ../shared/reference/pricing.json, beside the checkout (or --reference PATH): the reference
    liter-llm project's `schemas/pricing.json` (MIT licence), itself generated
    from models.dev (MIT licence, the Opencode team). USD per token for
    `provider/model` ids.

Output (committed to the repository):
  * crates/gateway/data/prices.txt, read by crates/gateway/src/pricing.rs.

What the generator changes on the way:
  * Provider names are renamed to this project's registry names where models.dev
    spells them differently and the model ids are the ones that provider's API
    takes (PROVIDER_RENAMES below), so `lookup(deployment.provider, upstream_model)`
    finds them. Providers not in the registry keep their models.dev names.
  * The 106 ids without a provider prefix (`gpt-4o`, `claude-sonnet-4-5`, ...)
    are dropped: each duplicates a prefixed entry with the same prices
    (checked here; the run fails if that stops being true).

Format of the output (plain text, UTF-8, sorted bytewise so lookups can binary
search the sections):
  # comment lines
  [provider]                   starts a section
  model<TAB>input<TAB>output[<TAB>cache_read[<TAB>cache_write]]
Prices are USD per token, written as Python's shortest round-trip repr; `-`
means "not known" (only ever used for cache_read when cache_write is known).

Usage:
  python3 tools/gen_prices.py            # regenerate the file
  python3 tools/gen_prices.py --check    # exit 1 if the committed file is stale
  python3 tools/gen_prices.py --date 2026-11-27   # pin the generation date

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The shared reference data sits beside the repository checkout.
DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pricing.json"
OUT = ROOT / "crates/gateway/data/prices.txt"
REGISTRY = ROOT / "crates/providers/data/providers.toml"

# models.dev provider id -> registry provider name. Only where the registry entry
# is the same service (same base URL family) and takes the same model ids.
PROVIDER_RENAMES = {
    "abliteration-ai": "abliteration",
    "alibaba-cn": "dashscope",  # registry: dashscope.aliyuncs.com (mainland China)
    "amazon-bedrock": "bedrock",
    "cloudflare-workers-ai": "cloudflare",  # `@cf/...` model ids
    "fireworks-ai": "fireworks_ai",  # `accounts/fireworks/models/...`
    "friendli": "friendliai",
    "github-models": "github",  # models.github.ai `publisher/model`
    "google": "gemini",  # Gemini API (generativelanguage.googleapis.com)
    "google-vertex": "vertex_ai",
    "moonshotai": "moonshot",  # api.moonshot.ai (international)
    "nano-gpt": "nanogpt",
    "novita-ai": "novita",
    "nvidia": "nvidia_nim",  # integrate.api.nvidia.com
    "togetherai": "together_ai",
    "vercel": "vercel_ai_gateway",
    "xiaomi": "xiaomi_mimo",
}

FIELDS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
)


def registry_names() -> set[str]:
    import tomllib

    with REGISTRY.open("rb") as f:
        return {p["name"] for p in tomllib.load(f)["provider"]}


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
        raise SystemExit(f"bad price {v!r}")
    return repr(float(v))


def generate(reference: Path, date: str) -> str:
    raw = reference.read_bytes()
    data = json.loads(raw)
    models: dict[str, dict] = data["models"]
    known = registry_names()
    for src, dst in PROVIDER_RENAMES.items():
        if dst not in known:
            raise SystemExit(f"rename target `{dst}` is not in the provider registry")
        if any(k.startswith(dst + "/") for k in models):
            raise SystemExit(f"rename target `{dst}` already has entries in the reference")

    sections: dict[str, dict[str, str]] = {}
    dropped = 0
    for key, entry in models.items():
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise SystemExit(f"{key}: unknown fields {sorted(unknown)}")
        provider, sep, model = key.partition("/")
        if not sep:
            # A bare id: accept dropping it only if a prefixed duplicate exists.
            if not any(k.endswith("/" + key) and models[k] == entry for k in models if k != key):
                raise SystemExit(f"bare id `{key}` has no prefixed duplicate; decide where it belongs")
            dropped += 1
            continue
        if not provider or not model or any(c in key for c in "\t\n\r[]") or model.strip() != model:
            raise SystemExit(f"cannot represent id {key!r}")
        provider = PROVIDER_RENAMES.get(provider, provider)
        values = [entry.get(f) for f in FIELDS]
        if values[0] is None or values[1] is None:
            raise SystemExit(f"{key}: input and output prices are required")
        while values[-1] is None:
            values.pop()
        line = model + "\t" + "\t".join(fmt(v) for v in values)
        if model in sections.setdefault(provider, {}):
            raise SystemExit(f"duplicate id {provider}/{model}")
        sections[provider][model] = line

    count = sum(len(s) for s in sections.values())
    routable = sorted(p for p in sections if p in known)
    out = [
        "# liter-llm built-in price table. GENERATED by tools/gen_prices.py: edit the generator,",
        "# not this file, then run `python3 tools/gen_prices.py`.",
        "#",
        "# Source: the liter-llm project's schemas/pricing.json (MIT licence), itself generated",
        "# from models.dev (MIT licence, the Opencode team).",
        f"# Generated: {date}",
        f"# Source sha256: {hashlib.sha256(raw).hexdigest()}",
        f"# Entries: {count} in {len(sections)} providers ({len(routable)} named as in the",
        f"# provider registry); {dropped} ids without a provider prefix dropped as duplicates.",
        "#",
        "# Prices are USD per token. Prices change: override them per [[models]] entry with",
        "# input_cost_per_token, output_cost_per_token, cache_read_input_token_cost and",
        "# cache_creation_input_token_cost.",
        "#",
        "# Format: `[provider]` starts a section; then one line per model:",
        "#   model<TAB>input<TAB>output[<TAB>cache_read[<TAB>cache_write]]   (`-` = unknown)",
        "# Sections and the models in each are sorted bytewise.",
    ]
    for provider in sorted(sections, key=lambda s: s.encode()):
        out.append(f"[{provider}]")
        for model in sorted(sections[provider], key=lambda s: s.encode()):
            out.append(sections[provider][model])
    return "\n".join(out) + "\n"


def committed_date() -> str | None:
    if not OUT.exists():
        return None
    for line in OUT.read_text(encoding="utf-8").splitlines():
        if line.startswith("# Generated: "):
            return line.removeprefix("# Generated: ").strip()
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    ap.add_argument("--date", help="generation date (default: today, UTC; --check keeps the committed one)")
    args = ap.parse_args()

    if args.check:
        date = args.date or committed_date() or ""
        text = generate(args.reference, date)
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python3 tools/gen_prices.py", file=sys.stderr)
            return 1
        return 0

    date = args.date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    text = generate(args.reference, date)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
