"""`camtl push RUN_DIR REPO_ID`: upload a finished run to the Hugging Face hub.

The folder goes up as it is (weights as safetensors, tokenizer, label maps, configs,
reports) with a fresh model card naming the repository; resume state and TensorBoard
events stay behind. huggingface_hub does the uploading; its token comes from ``--token``,
``$HF_TOKEN`` or ``hf auth login``, its endpoint from ``--endpoint`` or ``$HF_ENDPOINT``.
The way back, a model by name: camtl.hub_models.
"""

from __future__ import annotations

from pathlib import Path

from camtl.errors import CamtlError
from camtl.hub_models import IGNORED
from camtl.model_card import write_model_card
from camtl.runfiles import MODEL_FILE
from camtl.training.rundir import read_status


def push_run(
    run_dir: Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload ``run_dir`` to the model repository ``repo_id`` (created if missing);
    returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not (run_dir / MODEL_FILE).is_file():
        raise CamtlError(f"{run_dir}: no saved model here ({MODEL_FILE} missing)")
    status = read_status(run_dir)
    if not status or status.get("status") != "completed":
        raise CamtlError(f"{run_dir}: the run has not completed; push a finished run")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CamtlError(f"REPO_ID {repo_id!r}: expected NAMESPACE/NAME, e.g. me/my-camtl")
    write_model_card(run_dir, repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        # private=None leaves a new repository to the namespace's default visibility
        api.create_repo(repo_id, private=private or None, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(run_dir),
            repo_id=repo_id,
            repo_type="model",
            commit_message=commit_message or f"camtl run {run_dir.name}",
            ignore_patterns=IGNORED,
        )
    except HfHubHTTPError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CamtlError(f"push to {repo_id}: {first}") from None
    return str(commit.commit_url)
