"""Models by name from the Hugging Face hub: :func:`resolve_model` turns what a user wrote
for a model (``from_pretrained``, ``camtl predict | evaluate | serve``) into a folder: an
existing local path as it is, else a repository ``NAMESPACE/NAME`` pushed with ``camtl
push``, downloaded by huggingface_hub into its own cache (``$HF_HOME/hub`` or
``$HF_HUB_CACHE``) and used from there; ``HF_HUB_OFFLINE=1`` uses the cache alone.

A low layer (errors, run file names and huggingface_hub only), so that the model code can
call it; ``camtl push`` lives in camtl.hub.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from camtl.errors import CamtlError
from camtl.runfiles import CHECKPOINT_DIR, MODEL_FILE

log = logging.getLogger("camtl")

# never uploaded by camtl push, nor downloaded should a repository hold them: resume state,
# TensorBoard events, half-written files
IGNORED = [f"{CHECKPOINT_DIR}/*", f"{CHECKPOINT_DIR}.*/*", "tb/*", "*.tmp", "*.tmp-*"]
# a model repository's id as the hub spells it: NAMESPACE/NAME
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def is_repo_id(ref: str) -> bool:
    """Whether ``ref`` is spelled like a model repository's id, ``NAMESPACE/NAME``."""
    return bool(_REPO_ID.fullmatch(ref)) and ".." not in ref


def from_hub(ref: str | Path) -> bool:
    """Whether :func:`resolve_model` takes ``ref`` from the hub: a repository id that is not
    also an existing local path (a local folder wins over a repository of the same
    spelling)."""
    return not Path(ref).exists() and is_repo_id(str(ref))


def resolve_model(
    ref: str | Path,
    revision: str | None = None,
    *,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The folder of a camtl model named by ``ref``: an existing local path as it is, else
    the repository ``NAMESPACE/NAME`` at ``revision`` (a branch, tag or commit; default:
    the default branch), downloaded into huggingface_hub's cache (``cache_dir``, default
    ``$HF_HUB_CACHE``) unless it is there already. The hub is ``$HF_ENDPOINT``'s, read at
    the call; ``HF_HUB_OFFLINE=1`` uses the cache only. Every failure is one CamtlError
    naming the repository and revision."""
    if Path(ref).exists():
        if revision is not None:
            raise CamtlError(
                f"{ref}: a local folder has no revisions (revision {revision!r} applies to a "
                "model from the hub)"
            )
        return Path(ref)
    if not is_repo_id(str(ref)):
        raise CamtlError(
            f"{ref}: not a camtl run directory (no such folder) nor a model on the hub "
            "(NAMESPACE/NAME)"
        )
    return _download(str(ref), revision, token, cache_dir)


def _download(
    repo_id: str, revision: str | None, token: str | None, cache_dir: str | Path | None
) -> Path:
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or None
    hub = endpoint or constants.ENDPOINT
    where = f"{repo_id} (revision {revision or constants.DEFAULT_REVISION})"
    try:
        # the model file first: a repository that is not a camtl model is refused before
        # any weights come down, and the commit it names pins the rest of the download
        # (the cache holds a revision's files in snapshots/<commit>/)
        meta = hf_hub_download(
            repo_id,
            MODEL_FILE,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            endpoint=endpoint,
        )
        commit = Path(meta).parent.name
        folder = snapshot_download(
            repo_id,
            revision=commit,
            ignore_patterns=IGNORED,
            token=token,
            cache_dir=cache_dir,
            endpoint=endpoint,
        )
    except RevisionNotFoundError:
        raise CamtlError(f"{where}: no such branch, tag or commit on {hub}") from None
    except GatedRepoError:
        raise CamtlError(f"{where}: a gated repository on {hub}; ask for access") from None
    except RepositoryNotFoundError:
        raise CamtlError(
            f"{where}: no local folder of that name, and no model repository {repo_id} on "
            f"{hub} (a private one needs a token: $HF_TOKEN or hf auth login)"
        ) from None
    except LocalEntryNotFoundError as exc:  # no answer from the hub, nothing in the cache
        if constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE is set"
        else:
            cause = f" ({_first_line(exc.__cause__)})" if exc.__cause__ else ""
            reason = f"cannot reach {hub}{cause}"
        raise CamtlError(
            f"{where}: no local folder of that name, {reason}, and the cache holds no complete copy"
        ) from None
    except EntryNotFoundError:  # the remote kind: the repository has no model file
        raise CamtlError(
            f"{where}: not a camtl model ({MODEL_FILE} missing; camtl push uploads one)"
        ) from None
    except HfHubHTTPError as exc:
        raise CamtlError(f"{where}: {_first_line(exc)}") from None
    except Exception as exc:  # the connection lost while downloading, a full disk
        if not isinstance(exc, OSError) and not _transport_error(exc):
            raise
        raise CamtlError(f"{where}: download failed: {_first_line(exc)}") from None
    log.info("%s: commit %s, in %s", where, commit, folder)
    return Path(folder)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _transport_error(exc: BaseException) -> bool:
    """An HTTP client's own error (httpx's, or requests' for older huggingface_hub)."""
    return type(exc).__module__.partition(".")[0] in {"httpx", "httpx2", "requests", "urllib3"}
