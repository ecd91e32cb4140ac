from kedro.pipeline import Node, Pipeline

from srgan_pipeline.pipelines.data_prep.nodes import (
    acquire_sources,
    cut_train_tiles,
    make_eval_pairs,
    normalise_images,
    summarise_data_prep,
)


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
                ],
                outputs=["train_raw_manifest", "eval_raw_manifest"],
                name="acquire_sources",
            ),
            Node(
                normalise_images,
                inputs=["train_raw_manifest", "params:scale", "params:data_prep.min_size",
                        "params:data_prep.max_pixels"],
                outputs=["train_hr_images", "train_prep_report"],
                name="normalise_train_images",
            ),
            Node(
                normalise_images,
                inputs=["eval_raw_manifest", "params:scale", "params:data_prep.min_size",
                        "params:data_prep.max_pixels"],
                outputs=["eval_hr_images", "eval_prep_report"],
                name="normalise_eval_images",
            ),
            Node(
                cut_train_tiles,
                inputs=["train_hr_images", "train_prep_report", "params:scale",
                        "params:data_prep.tiles"],
                outputs=["train_hr_tiles", "train_lr_tiles"],
                name="cut_train_tiles",
            ),
            Node(
                make_eval_pairs,
                inputs=["eval_hr_images", "params:scale"],
                outputs="eval_pairs",
                name="make_eval_pairs",
            ),
            Node(
                summarise_data_prep,
                inputs=["train_prep_report", "eval_prep_report", "train_hr_tiles", "eval_pairs"],
                outputs="data_prep_report",
                name="summarise_data_prep",
            ),
        ]
    )
