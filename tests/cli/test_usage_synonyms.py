"""Options named as other tools name them get the evalkit option they mean, not the closest spelling."""

import pytest


@pytest.mark.parametrize(("typed", "meant"), [("--out", "--runs-dir"), ("--output-dir", "--runs-dir")])
def test_run_output_folder_synonyms_point_to_runs_dir(cli, typed, meant):
    code, _, err = cli("run", "geneval", "--model", "tiny-sd3", typed, "x")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"did you mean {meant}?" in err


def test_a_synonym_is_not_suggested_where_the_command_has_its_own_option(cli):
    code, _, err = cli("view", "runs", "--output", "x")
    assert code == 2 and "--runs-dir" not in err
