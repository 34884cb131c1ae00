"""Hugging Face hub ids ("org/name") resolved in the local Hugging Face cache, never over the network.

The cache folder is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
$XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub's order). A model
"org/name" lives in `models--org--name/`: `refs/<revision>` holds a commit hash and
`snapshots/<hash>/` the files (links into `blobs/`). The revision is "main" unless the id ends in
"@REV" (a branch or tag with a ref file, or a commit hash naming a snapshot folder).

What is loaded from a snapshot: the folder itself when it has config.json (safetensors checkpoint),
else its one .gguf file; with several .gguf files, "org/name:TAG" picks the one whose name contains
TAG (case-insensitive, e.g. "Q4_K_M"), and no TAG is an error listing them.
Every failure is a RefimplError saying which folder or file was looked for (README: Hub ids).
"""

import os
import re
from pathlib import Path

from .errors import RefimplError

__all__ = ["is_hub_id", "hub_cache_dir", "resolve_hub_id", "HubModelNotFound"]

_ID = re.compile(r"^(?P<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
                 r"(?:@(?P<rev>[A-Za-z0-9._/-]+?))?(?::(?P<tag>[A-Za-z0-9._-]+))?$")
_HASH = re.compile(r"^[0-9a-f]{40}$")


class HubModelNotFound(RefimplError):
    """A hub id whose model (or revision, or file) is not in the local Hugging Face cache."""


def is_hub_id(text):
    """True for "org/name" (optionally "@revision" and ":TAG") that is not an existing path."""
    s = str(text)
    if not _ID.match(s) or s.startswith((".", "~")) or ".." in s.split("/"):
        return False
    return not Path(s).exists()


def hub_cache_dir():
    """The Hugging Face hub cache folder, from the environment as huggingface_hub reads it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _snapshot(repo_dir, repo_id, rev):
    snaps = repo_dir / "snapshots"
    ref = repo_dir / "refs" / rev
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        if not _HASH.match(commit):
            raise HubModelNotFound(f"{ref}: expected a 40-hex commit hash, found {commit[:60]!r}")
        snap = snaps / commit
        if not snap.is_dir():
            raise HubModelNotFound(f"{repo_id}: refs/{rev} names commit {commit}, but {snap} is missing "
                                   f"(an interrupted download? fetch it again with huggingface-cli download {repo_id})")
        return snap
    if _HASH.match(rev) and (snaps / rev).is_dir():
        return snaps / rev
    have = sorted(p.name for p in snaps.iterdir() if p.is_dir()) if snaps.is_dir() else []
    refs = sorted(str(p.relative_to(repo_dir / "refs")) for p in (repo_dir / "refs").rglob("*") if p.is_file()) \
        if (repo_dir / "refs").is_dir() else []
    raise HubModelNotFound(f"{repo_id}: expected revision {rev!r} in {repo_dir} (refs/{rev} or snapshots/{rev}), "
                           f"found refs {refs or 'none'} and snapshots {have or 'none'}")


def resolve_hub_id(hub_id, cache_dir=None):
    """The local path to load for `hub_id`: a snapshot folder or a .gguf file inside one.

    Raises HubModelNotFound (a RefimplError) when the model, revision or file is not in the cache;
    the message names the folder searched and how to get the model there.
    """
    m = _ID.match(str(hub_id))
    if not m:
        raise RefimplError(f"{hub_id!r}: expected a hub id 'org/name' (optionally '@revision', ':TAG')")
    org, name, rev, tag = m.group("org"), m.group("name"), m.group("rev") or "main", m.group("tag")
    repo_id = f"{org}/{name}"
    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    repo_dir = cache / f"models--{org}--{name}"
    if not repo_dir.is_dir():
        raise HubModelNotFound(f"{repo_id}: not in the local Hugging Face cache (looked for {repo_dir}; the cache is "
                               f"$HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub). refimpl never downloads "
                               f"hub models: run `huggingface-cli download {repo_id}` where there is network, or "
                               f"pass a local path")
    snap = _snapshot(repo_dir, repo_id, rev)
    ggufs = sorted(p for p in snap.rglob("*.gguf") if p.is_file())
    if tag is not None:
        picked = [p for p in ggufs if tag.lower() in p.name.lower()]
        if len(picked) != 1:
            raise HubModelNotFound(f"{repo_id}:{tag}: expected exactly one .gguf file whose name contains {tag!r} in "
                                   f"{snap}, found {[p.name for p in picked] or 'none'} (files: "
                                   f"{[p.name for p in ggufs] or 'no .gguf'})")
        return picked[0]
    if (snap / "config.json").exists():
        if not (snap / "config.json").is_file():
            raise HubModelNotFound(f"{snap / 'config.json'}: a link to a missing blob (an interrupted download?)")
        return snap
    if len(ggufs) == 1:
        return ggufs[0]
    if len(ggufs) > 1:
        raise HubModelNotFound(f"{repo_id}: several .gguf files in {snap}; pick one with {repo_id}:TAG, TAG a part "
                               f"of its name (files: {[p.name for p in ggufs]})")
    raise HubModelNotFound(f"{repo_id}: expected config.json or a .gguf file in {snap}, found "
                           f"{sorted(p.name for p in snap.iterdir()) or 'an empty folder'}")
