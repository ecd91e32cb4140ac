"""The rules of the data_prep block that tie two settings, refused as the parameters are checked."""

from __future__ import annotations

import pytest
from test_params import check, with_value

from srgan_pipeline.params import ParameterError, clashing_source_names


def test_a_run_with_every_source_off_has_nothing_to_do():
    params = with_value("data_prep", "eval_sets", None)
    params["train_sources"] = {name: {**source, "enabled": False}
                               for name, source in params["train_sources"].items()}
    with pytest.raises(ParameterError) as error:
        check("data_prep", params)
    assert str(error.value) == (
        "data_prep: nothing to do: data_prep.train_sources and data_prep.eval_sets are both "
        "empty or disabled; enable or add a source")


def test_a_train_source_and_an_eval_set_of_one_name_are_refused_naming_both():
    params = with_value("data_prep", "eval_sets.DIV2K", {"path": "/data/div2k_valid"})
    with pytest.raises(ParameterError) as error:
        check("data_prep", params)
    assert str(error.value) == (
        "data_prep.train_sources.div2k and data_prep.eval_sets.DIV2K have the same name "
        "(ignoring letter case), and a source's name keys the folders its files go to: rename "
        "one of them")
    # a source turned off writes no folder
    check("data_prep", with_value("data_prep", "eval_sets.DIV2K", {"enabled": False}))


def test_source_names_clash_ignoring_case_only():
    assert clashing_source_names(["g.a.x", "g.b.y", "g.b.X"]).startswith("g.a.x and g.b.X ")
    assert clashing_source_names(["g.a.x", "g.b.y"]) is None
