"""Configs are typed once, at the CLI: registries build the groups, unknown keys are errors."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from vista.analysis.context import AnalysisSettings
from vista.analysis.registry import ANALYSES
from vista.conf.schema import AnalyzeJob, RunJob, TrainJob, sae_group
from vista.conf.typed import to_job
from vista.errors import VistaError
from vista.registry import Registry
from vista.saes import SAES, BatchTopKConfig, TopKConfig, VanillaConfig
from vista.sources.datasets import DATASETS, DatasetConfig
from vista.sources.encoders import ENCODERS


def _train_job(**over: object) -> object:
    cfg = OmegaConf.merge(OmegaConf.structured(TrainJob), {"store": "s.h5", "out_dir": "o"})
    cfg.sae = OmegaConf.structured(TopKConfig)
    for k, v in over.items():
        OmegaConf.update(cfg, k, v, force_add=True)
    return to_job(cfg)


def test_jobs_become_dataclasses_all_the_way_down() -> None:
    job = _train_job(**{"sae.k": 8})
    assert isinstance(job, TrainJob) and isinstance(job.sae, TopKConfig) and job.sae.k == 8
    run = to_job(
        OmegaConf.merge(
            OmegaConf.structured(RunJob), {"sae": OmegaConf.structured(BatchTopKConfig)}
        )
    )
    assert isinstance(run.dataset, DatasetConfig) and isinstance(run.eval, AnalysisSettings)
    for name, spec in ANALYSES.items():
        assert isinstance(getattr(run, name), spec.config), name


def test_sweep_entries_are_checked_and_switch_architecture_cleanly() -> None:
    job = _train_job(sweep=[{"k": 16}, {"architecture": "vanilla", "l1_coeff": 0.3}])
    assert [type(s) for s in job.sweep] == [TopKConfig, VanillaConfig]
    assert (
        job.sweep[0].k == 16
        and job.sweep[1].l1_coeff == 0.3
        and job.sweep[1].d_sae == job.sae.d_sae
    )
    with pytest.raises(
        VistaError, match=r"sweep entry 0: unknown option\(s\) \['kk'\] for the topk SAE"
    ):
        _train_job(sweep=[{"kk": 3}])
    with pytest.raises(VistaError, match="sweep entry 0"):
        _train_job(sweep=[{"k": "many"}])
    with pytest.raises(VistaError, match="sweep must be a list of mappings"):
        _train_job(sweep=[3])


def test_missing_settings_are_named() -> None:
    with pytest.raises(VistaError, match="Missing required setting.*sae, store, out_dir"):
        to_job(OmegaConf.structured(AnalyzeJob))


def test_groups_come_from_the_registries() -> None:
    assert set(sae_group()) == {n for n, c in SAES.items() if c.trainable}
    assert {f.name for f in dataclasses.fields(AnalyzeJob)} >= set(ANALYSES) | {"analysis", "eval"}
    for reg in (SAES, DATASETS, ENCODERS, ANALYSES):
        assert isinstance(reg, Registry) and len(reg) > 0 and list(reg) == sorted(reg)


def test_registry_refuses_duplicates_and_names_the_choices() -> None:
    reg: Registry[int] = Registry("widget", "vista")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)
    with pytest.raises(VistaError, match=r"Unknown widget 'b'; choose one of \['a'\]"):
        reg.get_entry("b")
    assert reg["a"] == 1 and "a" in reg and dict(reg) == {"a": 1}
