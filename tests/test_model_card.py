"""The model card: what a generator is and under which terms its weights may be used."""

from srgan_pipeline.model_card import CODE_LICENSE, model_card, training_data

STATE = {"generator_config": {"scale": 4, "channels": 64, "num_blocks": 16, "input_skip": False},
         "phase": "pretrain", "step": 1000}


def test_the_weights_terms_follow_the_training_data():
    training = training_data({"div2k": 30, "skimage_photos": 4})
    card = model_card(STATE, "srresnet", training)
    assert [entry["source"] for entry in card["training_data"]] == ["div2k", "skimage_photos"]
    assert "academic research use only" in card["weights_licence"]
    assert "skimage_photos" in card["weights_licence"]
    assert card["code_licence"] == CODE_LICENSE == "Apache-2.0"
    assert card["scale"] == 4 and card["steps"] == 1000 and "bicubic" in card["degradation"]
    assert card["architecture"].startswith("SRResNet") and "residual blocks: 16" in \
        card["architecture"]


def test_unknown_training_data_is_said_not_guessed():
    card = model_card(STATE, "srresnet", None)
    assert card["training_data"] == "not recorded"
    assert "not recorded here" in card["weights_licence"]
