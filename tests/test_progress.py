"""Progress bars redraw often on a terminal and rarely in a log (art_idfr/progress.py)."""
import io

from art_idfr.progress import LOG_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(stream, monkeypatch) -> int:
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    bar = progress_bar(range(2000), file=stream, desc="epoch")
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}", refresh=False)
    return stream.getvalue().count("\r")


def test_log_file_gets_a_few_lines_not_one_per_step(monkeypatch):
    assert _redraws(io.StringIO(), monkeypatch) <= 3  # the first draw, the close, nothing in between


def test_terminal_keeps_tqdms_rate(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    bar = progress_bar(range(3), file=_Terminal(), desc="epoch")
    assert bar.mininterval < 1 < LOG_INTERVAL_S
    quiet = progress_bar(range(3), file=io.StringIO(), desc="epoch")
    assert quiet.mininterval == LOG_INTERVAL_S
    bar.close(), quiet.close()


def test_every_step_redrawn_when_asked(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    stream = io.StringIO()
    bar = progress_bar(range(50), file=stream, desc="epoch", mininterval=0, miniters=1)
    for _ in bar:
        pass
    assert stream.getvalue().count("\r") > 40  # the counting above can see many redraws
