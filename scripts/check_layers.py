#!/usr/bin/env python3
"""Fails when a source file includes a header of a layer above its own (docs/ARCHITECTURE.md).

Each folder under src/ may include the public headers (include/gptrt), its own folder and the
folders listed for it below; backends/<name>/ may include backends/ (the seam) and
backends/reference/, never another backend. tools/, tests/ and bench/ sit on top and may include
anything. Usage: check_layers.py [repo root]
"""
import pathlib
import re
import sys

# folder -> folders it may include (besides itself and include/gptrt)
ALLOWED = {
    "platform": set(),
    "core": {"platform"},
    "ir": {"core", "platform"},
    "onnx": {"ir", "core", "platform"},
    "hf": {"onnx", "ir", "core", "platform"},
    "tokenizer": {"core", "platform"},
    "backends": {"ir", "core", "platform"},
    "backends/reference": {"backends", "ir", "core", "platform"},
    "backends/cpu": {"backends", "backends/reference", "ir", "core", "platform"},
    "backends/cuda": {"backends", "backends/reference", "ir", "core", "platform"},
    "runtime": {"backends", "backends/reference", "ir", "core", "platform"},
    "passes": {"runtime", "backends", "backends/reference", "ir", "core", "platform"},
    "builder": {"passes", "runtime", "backends", "onnx", "hf", "ir", "core", "platform"},
    "generate": {"runtime", "tokenizer", "core", "platform"},
    "serve": {"generate", "runtime", "tokenizer", "core", "platform"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel: str):
    """The layer of a path relative to src/ ('backends/cpu/gemm.h' -> 'backends/cpu')."""
    parts = rel.split("/")
    if parts[0] == "backends" and len(parts) > 2:
        return "backends/" + parts[1]
    return parts[0] if len(parts) > 1 else None


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    src = root / "src"
    bad = []
    files = [p for p in src.rglob("*") if p.suffix in (".h", ".cpp", ".cu", ".cuh", ".inc")]
    for path in sorted(files):
        rel = path.relative_to(src).as_posix()
        own = layer_of(rel)
        if own not in ALLOWED:
            bad.append(f"src/{rel}: folder '{own}' has no entry in scripts/check_layers.py")
            continue
        for inc in INCLUDE.findall(path.read_text(errors="replace")):
            if inc.startswith("gptrt/") or "/" not in inc:
                continue  # public headers, generated headers, same-folder includes
            target = layer_of(inc)
            if target is None or not (src / inc).exists():
                continue
            if target != own and target not in ALLOWED[own]:
                bad.append(f"src/{rel} includes \"{inc}\": {own} may not depend on {target}")
    for line in bad:
        print(line)
    if bad:
        print(f"{len(bad)} include(s) point up or sideways; see docs/ARCHITECTURE.md for the layers")
        return 1
    print(f"include directions: {len(files)} files checked, all point down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
