"""Nothing read from a file runs code: files whose unpickling would create a marker file are
refused with one sentence, and the marker never appears. Outputs get the user's umask."""

from __future__ import annotations

import gzip
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analysis.planted import identity_sae
from vista.errors import VistaError
from vista.saes.io import load_sae, save_sae
from vista.sources.datasets import DatasetConfig, make_dataset
from vista.sources.encoders import EncoderConfig, make_encoder


class Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def test_the_payload_really_runs_when_unpickled_without_restriction(marker: Path) -> None:
    pickle.loads(pickle.dumps(Payload(marker)))  # the control: the marker is real
    assert marker.exists()


def test_a_vista_checkpoint_with_a_payload_is_refused(tmp_path: Path, marker: Path) -> None:
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.W_enc": Payload(marker)}, "hyper_parameters": {}}, p)
    with pytest.raises(VistaError, match="does not unpickle arbitrary objects"):
        load_sae(p)
    assert not marker.exists()


def test_a_hydra_era_vista_checkpoint_with_omegaconf_hparams_still_loads(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    sae = identity_sae(4)
    hp = OmegaConf.create({"variant": "topk", "top_k": 2, "d_in": 4, "d_sae": 4})
    sd = {f"model.{k}": v for k, v in sae.state_dict().items()}
    p = tmp_path / "hydra.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": hp}, p)
    loaded = load_sae(p)
    assert loaded.d_model == 4 and torch.equal(loaded.W_dec, sae.W_dec)


def test_module_encoder_state_dicts_and_saved_modules(tmp_path: Path, marker: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(marker)}, evil)
    cfg = EncoderConfig(name="module", target="tests.analysis.planted:TinyNet", path=str(evil))
    with pytest.raises(VistaError, match="does not unpickle arbitrary objects"):
        make_encoder(cfg)
    # A whole pickled module needs the opt-in whose name says it runs code.
    with pytest.raises(VistaError, match="encoder.trust_pickled_code=true"):
        make_encoder(EncoderConfig(name="module", path=str(evil)))
    assert not marker.exists()


def test_dataset_pickles_are_read_as_numpy_arrays_only(tmp_path: Path, marker: Path) -> None:
    arrays = tuple((np.zeros((2, 784), np.float32), np.zeros(2, np.int64)) for _ in range(3))
    good = tmp_path / "good" / "mnist.pkl.gz"
    good.parent.mkdir()
    with gzip.open(good, "wb") as f:
        pickle.dump(arrays, f, protocol=2)
    assert make_dataset(DatasetConfig(name="mnist", root=str(good))).images.shape[1:] == (28, 28)
    bad = tmp_path / "bad" / "mnist.pkl.gz"
    bad.parent.mkdir()
    with gzip.open(bad, "wb") as f:
        pickle.dump(((Payload(marker), 0), (0, 0), (0, 0)), f)
    with pytest.raises(VistaError, match="is not a pickle of numpy arrays"):
        make_dataset(DatasetConfig(name="mnist", root=str(bad)))
    assert not marker.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_sae_files_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        d = save_sae(identity_sae(4), tmp_path / "sae")
    finally:
        os.umask(old)
    for f in Path(d).iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name
