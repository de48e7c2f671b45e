"""Render ``deploy/gramine/modelseal.manifest.template`` for this installation.

Usage::

    python -m modelseal.attestation.gramine TEMPLATE --out modelseal.manifest \\
        --config-dir DIR --models-dir DIR --agent-home DIR [--set name=value]...

The template uses plain ``{{ name }}`` substitutions (so ``gramine-manifest -D`` renders it too);
``{{ trusted_files }}`` becomes the interpreter, the standard library, site-packages and the
modelseal package directory of the running Python. Unknown or missing names are errors.
Gramine cannot run here; this only writes the manifest.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from modelseal.attestation.errors import AttestationError

__all__ = ["DEFAULTS", "installation_paths", "render_manifest", "trusted_file_uris"]

_NAME = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
DEFAULTS: Final = {
    "gramine_libos": "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so",
    "gramine_runtimedir": "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc",
    "arch_libdir": "/lib/x86_64-linux-gnu",
    "usr_arch_libdir": "/usr/lib/x86_64-linux-gnu",
    "log_level": "error",
    "rest_port": "8000",
    "grpc_port": "9000",
    "edmm": "false",
    "enclave_size": "8G",
    "max_threads": "64",
    "isv_prod_id": "1",
    "isv_svn": "1",
}


def installation_paths() -> dict[str, str]:
    """Paths of this installation the template needs (interpreter, prefix, package parent)."""
    import modelseal

    package = Path(modelseal.__file__).resolve().parent
    return {
        "python": os.path.realpath(sys.executable),
        "python_prefix": sys.base_prefix,
        "package_parent": str(package.parent),
    }


def trusted_file_uris() -> list[str]:
    """``sgx.trusted_files`` entries covering the interpreter, the standard library,
    site-packages and the modelseal package (a directory entry covers every file below it)."""
    import modelseal

    paths = sysconfig.get_paths()
    entries = [os.path.realpath(sys.executable)]
    dirs = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    dirs.add(str(Path(modelseal.__file__).resolve().parent))
    entries += sorted(d.rstrip("/") + "/" for d in dirs if Path(d).is_dir())
    return [f"file:{entry}" for entry in entries]


def render_manifest(template: str, values: Mapping[str, str]) -> str:
    """Substitute every ``{{ name }}``; a name without a value is an error."""
    values = dict(values)
    if "trusted_files" not in values:
        values["trusted_files"] = "\n".join(f'  "{uri}",' for uri in trusted_file_uris())
    missing = sorted({m.group(1) for m in _NAME.finditer(template)} - set(values))
    if missing:
        raise AttestationError(f"the manifest template needs value(s) for {', '.join(missing)}")
    for name, value in values.items():
        if name != "trusted_files" and ('"' in value or "\n" in value):
            raise AttestationError(f"value of {name} must not contain quotes or newlines")
    return _NAME.sub(lambda m: values[m.group(1)], template)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelseal.attestation.gramine")
    parser.add_argument("template", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config-dir", required=True, help="host directory with config.json")
    parser.add_argument("--models-dir", required=True, help="host model repository")
    parser.add_argument("--agent-home", required=True, help="host directory for the agent home")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    values = {**DEFAULTS, **installation_paths()}
    values.update(
        config_dir=args.config_dir, models_dir=args.models_dir, agent_home=args.agent_home
    )
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r} is not NAME=VALUE")
        values[name] = value
    try:
        text = render_manifest(args.template.read_text(encoding="utf-8"), values)
        args.out.write_text(text, encoding="utf-8")
    except (OSError, AttestationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
