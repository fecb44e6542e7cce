"""The HTML report is self-contained and shows every section with real plots."""

from __future__ import annotations

from cinematch.core.settings import Settings
from cinematch.pipelines.report import write_report
from cinematch.pipelines.simulate import simulate
from cinematch.storage.warehouse import read_session


def test_report_after_simulation(home: Settings) -> None:
    simulate(home, weeks=3)
    with read_session(home) as con:
        path = write_report(con, home)
    html = path.read_text()
    assert path.parent == home.reports_dir and (path.parent / "latest.html").exists()
    # 1 score history + 3 distributions + 2 model plots + trending + buffer
    assert html.count("<svg") == 8
    assert "no data yet" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from elsewhere
    for text in ("insufficient_data", "warning", "retrain", "ratings.unique_key", "batch_w3"):
        assert text in html
