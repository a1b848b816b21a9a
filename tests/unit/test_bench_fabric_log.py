"""What a failed bench run shows of its fabric's log: the warnings and errors, which say why."""

from pathlib import Path

from bench.cloud import warnings


def test_only_warnings_and_errors_are_shown_the_last_ones_kept(tmp_path: Path) -> None:
    log = tmp_path / "fabric.log"
    lines = ['{"level":"info","msg":"up"}', "plain output of a child"]
    lines += [f'{{"level":"warning","msg":"spawn failed","n":{i}}}' for i in range(5)]
    lines += ['{"level":"error","msg":"boom"}']
    log.write_text("\n".join(lines) + "\n")
    shown = warnings(log, most=3).splitlines()
    assert shown == [
        '{"level":"warning","msg":"spawn failed","n":3}',
        '{"level":"warning","msg":"spawn failed","n":4}',
        '{"level":"error","msg":"boom"}',
    ]


def test_a_quiet_or_missing_log_says_so(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_text('{"level":"info","msg":"up"}\n')
    assert warnings(quiet) == "(none)"
    assert warnings(tmp_path / "missing.log") == ""
