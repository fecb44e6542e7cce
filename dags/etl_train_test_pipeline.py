"""
### etl_train_test_pipeline

On demand: ETL, create futures, train, find the latest model, test it on held-out data.

- **tasks**: `run_etl` (incremental bronze → silver → gold) → `create_futures` (champion predictions for
  `pairs_file`, or for the 200 newest buffered (user, movie, date) triples, under `CINEMATCH_HOME/futures/`) →
  `needs_training` (short-circuit) → `train_model` (register a version; promoted only if not worse) →
  `find_latest_model` (newest `version_*` folder) → `test_model` (metrics on the held-out 20 %) →
  `validate_run` → `notify`.
- **params**: `pairs_file` (default: generated from the buffer), `force_train` (default false).
- **idempotent**: with nothing merged into silver since the champion, `train_model` is skipped (no duplicate
  version); the latest model is still found and tested, and the run ends green.
"""

from __future__ import annotations

from airflow.sdk import Param, TriggerRule, dag, task

from cinematch import orchestration as orch


@dag(
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "training", "ml"],
    default_args=orch.default_args(),
    params={
        "pairs_file": Param(None, type=["null", "string"], description="user,movie[,date] pairs to predict"),
        "force_train": Param(False, type="boolean", description="train even if nothing new was merged"),
    },
)
def etl_train_test_pipeline() -> None:
    @task(pool=orch.POOL)
    def run_etl() -> dict:
        return orch.build_silver_gold()

    @task(pool=orch.POOL)
    def create_futures(built: dict, params: dict | None = None, run_id: str | None = None) -> dict:
        return orch.create_futures(pairs_file=params["pairs_file"], tag=run_id)

    @task.short_circuit(pool=orch.POOL, ignore_downstream_trigger_rules=False)
    def needs_training(futures: dict, params: dict | None = None) -> bool:
        return orch.pending_batches(force=params["force_train"])["train"]

    @task(pool=orch.POOL)
    def train_model(params: dict | None = None) -> dict:
        return orch.train_model(force=params["force_train"])

    @task(pool=orch.POOL, trigger_rule=TriggerRule.NONE_FAILED)
    def find_latest_model(trained: dict | None) -> dict:
        return orch.latest_model()

    @task(pool=orch.POOL)
    def test_model(latest: dict) -> dict:
        return orch.test_model(latest["version"])

    @task(pool=orch.POOL, trigger_rule=TriggerRule.NONE_FAILED)
    def validate_run(built: dict, trained: dict | None, tested: dict) -> dict:
        return orch.validate_run("etl_train_test_pipeline", etl=built, training=trained, test=tested)

    @task
    def notify(summary: dict, run_id: str | None = None) -> dict:
        return orch.notify("etl_train_test_pipeline", summary, run_id)

    built = run_etl()
    trained = train_model()
    needs_training(create_futures(built)) >> trained
    tested = test_model(find_latest_model(trained))
    notify(validate_run(built, trained, tested))


etl_train_test_pipeline()
