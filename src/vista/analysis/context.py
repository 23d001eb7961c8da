"""What every analysis of one call shares: the SAE, the store split, its labels, the settings,
and the one cached encode pass (``Context.encoded``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vista.analysis.result import Skip
from vista.errors import VistaError
from vista.metrics.uncertainty import rng_for

log = logging.getLogger(__name__)


@dataclass
class AnalysisSettings:
    """How analyses read the store and state their uncertainty (``eval.*``)."""

    split: str = "validation"
    """Store split to analyse."""
    labels: list[str] = field(default_factory=list)
    """Labels to analyse (empty = every label of the split)."""
    batch_tokens: int = 16384
    """Tokens encoded per step of the shared pass."""
    device: str = "cpu"
    n_boot: int = 1000
    """Bootstrap replicates behind every confidence interval (0 = no intervals)."""
    n_perm: int = 1000
    """Permutations behind every p-value."""
    confidence: float = 0.95
    """Coverage of the confidence intervals."""
    seed: int = 0
    """Seed of bootstraps, permutations, random controls and samples."""
    test_size: float = 0.2
    """Held-out part of the split for probes and rankings (stratified, VISTA's 80/20)."""
    split_seed: int = 42
    """Seed of that stratified split (VISTA's ``random_state=42``)."""
    dense_codes_mb: float = 128.0
    """Keep the per-image codes dense up to this size, else sparse (CSR)."""
    pursuit: str = ""
    """Analyse an inference-time pursuit encoder on the SAE's dictionary: ihtp or mpsae."""
    pursuit_k: int = 8
    """ihtp: atoms per token before the union over an image; mpsae: pursuit steps."""


class Context:
    """The inputs of one ``vista analyze`` call; the encode pass runs once, when first needed."""

    def __init__(
        self,
        sae: Any,
        store: str | os.PathLike[str],
        settings: AnalysisSettings | None = None,
        sae_path: str = "",
    ) -> None:
        from vista.store import ActivationStore

        self.sae = sae
        self.sae_path = sae_path
        self.store = Path(store)
        self.settings = settings or AnalysisSettings()
        s = self.settings
        with ActivationStore(self.store) as st:
            self.info = st.split(s.split)
            wanted = list(s.labels) or list(self.info.label_names)
            self.labels: dict[str, np.ndarray] = st.labels(s.split, wanted)
            self.class_names = {k: st.class_names(s.split, k) for k in self.labels}
            self.original_indices = st.original_indices(s.split)
            self.store_attrs = st.attrs
        for name, y in self.labels.items():
            bad = y[(y < -1) | (y >= len(self.class_names[name]))]
            if bad.size:
                raise VistaError(
                    f"Label {name!r} of {str(self.store)!r} holds value {int(bad[0])}, outside its "
                    f"{len(self.class_names[name])} classes (-1 marks a missing label); fix the store."
                )
        if sae.d_model != self.info.d_model:
            raise VistaError(
                f"The SAE reads {sae.d_model}-d activations but split {s.split!r} of "
                f"{str(self.store)!r} holds {self.info.d_model}-d ones; pair the SAE with the store "
                "it was trained for."
            )
        self._splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._joint: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.shared: tuple[Any, Path] | None = None
        """The processes sharing the encode pass, and their scratch folder (``share_pass``)."""

    # -- the shared pass ------------------------------------------------------------------------
    def encode(self, sae: Any) -> Any:
        """The shared pass of ``sae`` over the split (``EncodedSplit``)."""
        from vista.analysis.encoding import encode_split

        s = self.settings
        enc = encode_split(
            sae,
            self.store,
            s.split,
            batch_tokens=s.batch_tokens,
            device=s.device,
            dense_codes_mb=s.dense_codes_mb,
        )
        log.info("Encoded %d images of %s in %.1fs.", enc.n_images, s.split, enc.seconds)
        return enc

    @cached_property
    def encoded(self) -> Any:
        """The ``EncodedSplit`` of the SAE on the split (computed once): on the processes of
        ``shared`` when set (``share_pass``), else here."""
        if self.shared is None:
            return self.encode(self.sae)
        from vista.analysis.distributed import encode_split_shared

        ranks, scratch = self.shared
        s = self.settings
        enc = encode_split_shared(self.sae, self.store, s.split, ranks, scratch,
                                  batch_tokens=s.batch_tokens, dense_codes_mb=s.dense_codes_mb)  # fmt: skip
        self.sae.to(s.device)  # back from this process's device, where the analyses expect it
        if enc is not None:
            log.info("Encoded %d images of %s in %.1fs on %d processes.", enc.n_images, s.split,
                     enc.seconds, ranks.world)  # fmt: skip
        return enc

    def share_pass(self, ranks: Any, scratch: Path) -> bool:
        """Run the shared pass now, split across the processes of ``ranks``
        (``vista.sources.extract.Ranks``) through the folder ``scratch``; True in the first
        process, which then holds it and runs the analyses, False in the others."""
        self.shared = (ranks, scratch)
        return self.encoded is not None

    @cached_property
    def identity(self) -> dict[str, str]:
        """What results of this context are of: the SAE and the store, by path and by content (a
        digest of the SAE's files, the store's fingerprint over all its splits), so a moved run
        directory is still the same run and a retrained SAE is not."""
        import hashlib

        from vista.saes.io import sae_digest
        from vista.store import ActivationStore, store_fingerprint

        with ActivationStore(self.store) as st:
            splits = sorted(st.splits)
        parts = [store_fingerprint(self.store, s) for s in splits]
        return {
            "sae": self.sae_path,
            "store": str(self.store.resolve()),
            "sae_digest": sae_digest(self.sae_path) if self.sae_path else "",
            "store_digest": hashlib.sha256(":".join(parts).encode()).hexdigest()[:16],
        }

    @cached_property
    def control_sae(self) -> Any:
        """A randomly initialised SAE of the same config, centred like the trained one (the
        trained ``b_dec``, and BatchTopK's threshold): the null control of ``dynamics``."""
        from dataclasses import replace

        from vista.saes import make_sae

        rand = make_sae(replace(self.sae.cfg, seed=int(self.sae.cfg.seed) + 1_000_003))
        with_state = {k: v for k, v in self.sae.state_dict().items() if k in ("b_dec", "threshold")}
        rand.load_state_dict({**rand.state_dict(), **with_state})
        return rand.eval()

    @cached_property
    def control(self) -> Any:
        """The shared pass through ``control_sae``."""
        return self.encode(self.control_sae)

    # -- labels -----------------------------------------------------------------------------------
    def rng(self, *keys: str | int) -> np.random.Generator:
        return rng_for(self.settings.seed, *keys)

    def labelled(self, label: str) -> np.ndarray:
        """Indices of the images that carry ``label`` (-1 marks a missing value)."""
        return np.flatnonzero(self.labels[label] >= 0)

    def usable_labels(self, min_classes: int = 2) -> dict[str, str]:
        """Label -> why it cannot be analysed ('' = usable)."""
        out = {}
        for name, y in self.labels.items():
            # A class needs two images to reach both parts of the stratified train/test split.
            counts = np.bincount(y[y >= 0]) if (y >= 0).any() else np.zeros(0, int)
            present = int((counts >= 2).sum())
            out[name] = (
                ""
                if present >= min_classes
                else f"label {name!r} has {present} class(es) with two or more images in split "
                f"{self.settings.split!r}"
            )
        return out

    def require_labels(self, min_labels: int = 1) -> list[str]:
        """The usable labels, or ``Skip`` with the reason."""
        why = self.usable_labels()
        usable = [k for k, reason in why.items() if not reason]
        if len(usable) < min_labels:
            have = ", ".join(self.labels) or "none"
            reasons = "".join(f" ({r})" for r in why.values() if r)
            raise Skip(
                f"it needs {min_labels} label(s) with at least two classes; split "
                f"{self.settings.split!r} of {self.store.name} has {have}{reasons}"
            )
        return usable

    def pick_labels(self, wanted: list[str], min_labels: int = 1) -> list[str]:
        """``wanted`` (or every usable label if empty), checked: unknown names are an error,
        fewer than ``min_labels`` usable ones a ``Skip``."""
        unknown = [w for w in wanted if w not in self.labels]
        if unknown:
            raise VistaError(
                f"Label(s) {unknown} are not in split {self.settings.split!r} of "
                f"{str(self.store)!r}; it has {list(self.labels) or 'none'}."
            )
        usable = self.require_labels(min_labels)
        names = [n for n in (wanted or usable) if n in usable]
        if len(names) < min_labels:
            raise Skip(f"the labels {wanted} leave fewer than {min_labels} usable label(s)")
        return names

    def train_test(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """VISTA's stratified split of the labelled images (indices into the split), cached."""
        if label not in self._splits:
            from vista.analysis.probing import split_indices

            idx = self.labelled(label)
            tr, te, _ = split_indices(
                self.labels[label][idx], self.settings.test_size, self.settings.split_seed
            )
            self._splits[label] = (idx[tr], idx[te])
        return self._splits[label]

    def joint_train_test(self, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One stratified split of every image of the split for all of ``labels`` at once (strata:
        their joint classes, a missing value counting as a class of its own), cached: what
        selects for one label never scores another (``intervene``). A label's own parts are these
        intersected with the images that carry it."""
        key = "\x00".join(sorted(labels))
        if key not in self._joint:
            from vista.analysis.probing import split_indices
            from vista.metrics.information import combine_labels

            ys = [self.labels[n] + 1 for n in sorted(labels)]  # -1 (missing) becomes a class
            joint = combine_labels(*ys) if ys else np.zeros(self.info.n_rows, dtype=np.int64)
            strata = np.unique(joint, return_inverse=True)[1]
            counts = np.bincount(strata)
            strata[counts[strata] < 2] = len(counts)  # lone combinations share one stratum
            if np.bincount(strata)[-1] == 1:  # ... unless it is alone too: the largest takes it
                strata[strata == len(counts)] = int(np.argmax(counts))
            tr, te, _ = split_indices(strata, self.settings.test_size, self.settings.split_seed)
            self._joint[key] = (tr, te)
        return self._joint[key]

    def metadata(self) -> dict[str, Any]:
        import platform

        import sklearn
        import torch

        from vista import __version__

        s = self.settings
        return {
            "sae": self.sae_path,
            "architecture": self.sae.cfg.architecture,
            "d_model": self.sae.d_model,
            "d_sae": self.sae.d_sae,
            "store": str(self.store.resolve()),
            "split": s.split,
            "n_images": self.info.n_rows,
            "tokens_per_image": self.info.n_tokens,
            "labels": list(self.labels),
            "encoder": self.store_attrs.get("encoder", self.store_attrs.get("model", "")),
            "layer": self.store_attrs.get("layer", ""),
            "n_boot": s.n_boot,
            "confidence": s.confidence,
            "seed": s.seed,
            "versions": {
                "vista": __version__,
                "numpy": np.__version__,
                "torch": torch.__version__,
                "sklearn": sklearn.__version__,
                "python": platform.python_version(),
            },
        }
