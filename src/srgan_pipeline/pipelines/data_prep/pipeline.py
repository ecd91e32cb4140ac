from kedro.pipeline import Node, Pipeline

from srgan_pipeline.pipelines.data_prep.nodes import (
    acquire_sources,
    build_train_store,
    make_eval_pairs,
    normalise_images,
    summarise_data_prep,
)

PARALLEL = ["params:data_prep.workers", "params:data_prep.show_progress"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                acquire_sources,
                inputs=[
                    "params:data_prep.train_sources",
                    "params:data_prep.eval_sets",
                    "params:data_prep.raw_dir",
                    "params:data_prep.show_progress",
                    "params:data_prep.archive_limits",
                ],
                outputs=["train_raw_manifest", "eval_raw_manifest"],
                name="acquire_sources",
            ),
            Node(
                normalise_images,
                inputs=["train_raw_manifest", "params:scale", "params:data_prep.min_size",
                        "params:data_prep.max_pixels", *PARALLEL],
                outputs=["train_hr_images", "train_prep_report"],
                name="normalise_train_images",
            ),
            Node(
                normalise_images,
                inputs=["eval_raw_manifest", "params:scale", "params:data_prep.min_size",
                        "params:data_prep.max_pixels", *PARALLEL],
                outputs=["eval_hr_images", "eval_prep_report"],
                name="normalise_eval_images",
            ),
            Node(
                build_train_store,
                inputs=["train_hr_images", "train_prep_report", "params:scale",
                        "params:data_prep.tiles", *PARALLEL],
                outputs="train_store",
                name="build_train_store",
            ),
            Node(
                make_eval_pairs,
                inputs=["eval_hr_images", "params:scale", *PARALLEL],
                outputs="eval_pairs",
                name="make_eval_pairs",
            ),
            Node(
                summarise_data_prep,
                inputs=["train_prep_report", "eval_prep_report", "train_store", "eval_pairs"],
                outputs="data_prep_report",
                name="summarise_data_prep",
            ),
        ]
    )
