"""SHA-256 checks of the shipped assets: a damaged or missing file is named, with its rebuild command.

safetensors, npz and JSON files carry no checksum of their own: 64 overwritten bytes in a VAE's
weights make the live MEG env return NaN rewards, the same damage to the U-Net plausible wrong ones.
``envs/assets/MANIFEST.sha256`` lists the digest of every asset (``sha256sum`` format); the loaders
call :func:`verify_asset` before reading a shipped file, which hashes each file once per process.

    python -m edgegen.envs.integrity           # check every asset against the manifest
    python -m edgegen.envs.integrity --write   # rewrite the manifest after rebuilding assets
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

__all__ = ["ASSETS_DIR", "AssetError", "rebuild_command", "verify_asset", "verify_assets", "write_manifest"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
MANIFEST_NAME = "MANIFEST.sha256"
_REBUILD = {
    "flops.json": "python -m edgegen.envs.backends.flops",
    "meg_backbone/": "python -m edgegen.envs.backends.diffusion.train",
    "meg_quality_profile.npz": "python -m edgegen.envs.backends.diffusion.profile",
    "shape16_classifier.safetensors": "python -m edgegen.envs.backends.frechet",
}
_SKIP = {MANIFEST_NAME, "README.md"}
_THEN = " and then `python -m edgegen.envs.integrity --write`"
_verified: set[tuple[Path, Path]] = set()


class AssetError(ValueError):
    """A shipped asset does not match its manifest digest."""


def rebuild_command(relative: str) -> str:
    """The command that rebuilds the asset at ``relative`` (a path inside the assets folder)."""
    for prefix, command in _REBUILD.items():
        if relative == prefix or (prefix.endswith("/") and relative.startswith(prefix)):
            return command
    return "the script that made it"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _manifest(root: Path) -> dict[str, str]:
    path = root / MANIFEST_NAME
    try:
        lines = path.read_text(encoding="ascii").splitlines()
        entries: dict[str, str] = {}
        for line in lines:
            if line.strip():
                digest, relative = line.split("  ", 1)
                entries[relative] = digest
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise AssetError(
            f"asset manifest {path} is missing or unreadable ({err}); restore it from the package, or "
            "rewrite it with `python -m edgegen.envs.integrity --write` after checking the assets"
        ) from None
    return entries


def verify_asset(path: str | Path, root: Path | None = None) -> None:
    """Check a shipped file against the manifest (once per process); files outside ``root`` pass.

    Raises:
        FileNotFoundError: the file is missing (message: the file and its rebuild command).
        AssetError: its SHA-256 differs from the manifest's, or it is not listed.
    """
    root = ASSETS_DIR if root is None else Path(root)
    path = Path(path).resolve()
    key = (root, path)
    if key in _verified:
        return
    try:
        relative = path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return  # a user's own file: no manifest to check it against
    command = rebuild_command(relative)
    if not path.is_file():
        raise FileNotFoundError(f"asset {path} is missing; rebuild it with `{command}`{_THEN}")
    expected = _manifest(root).get(relative)
    if expected is None:
        raise AssetError(f"asset {path} is not in {root / MANIFEST_NAME}; rebuild it with `{command}`{_THEN}")
    actual = _digest(path)
    if actual != expected:
        raise AssetError(
            f"asset {path} is corrupt (SHA-256 {actual[:16]}... instead of {expected[:16]}...); "
            f"rebuild it with `{command}`{_THEN}, or reinstall the package"
        )
    _verified.add(key)


def verify_assets(folder: str | Path, root: Path | None = None) -> None:
    """:func:`verify_asset` on every manifest entry under ``folder`` (a missing one is named too)."""
    root = ASSETS_DIR if root is None else Path(root)
    folder = Path(folder).resolve()
    prefix = folder.relative_to(root.resolve()).as_posix() + "/"
    for relative in sorted(_manifest(root)):
        if relative.startswith(prefix):
            verify_asset(root / relative, root)


def write_manifest(root: Path | None = None) -> Path:
    """Write the digests of every file under ``root`` (except the manifest and READMEs)."""
    root = ASSETS_DIR if root is None else Path(root)
    lines = [
        f"{_digest(path)}  {path.relative_to(root).as_posix()}"
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name not in _SKIP
    ]
    target = root / MANIFEST_NAME
    target.write_text("\n".join(lines) + "\n", encoding="ascii")
    _verified.clear()
    return target


def main() -> None:
    """Check the shipped assets, or rewrite the manifest with ``--write``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the manifest from the files")
    args = parser.parse_args()
    if args.write:
        print(f"wrote {write_manifest()}")
        return
    entries = _manifest(ASSETS_DIR)
    for relative in sorted(entries):
        verify_asset(ASSETS_DIR / relative)
    print(f"{len(entries)} assets match {ASSETS_DIR / MANIFEST_NAME}")


if __name__ == "__main__":
    main()
