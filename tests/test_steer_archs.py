"""The whole engine on every tiny architecture: discovery, extraction (held-out statistics),
applying the extracted vector (hook and, where the block allows, folded), and removal."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cape.errors import CapeError  # noqa: E402
from cape.steer.data import default_set  # noqa: E402
from cape.steer.extraction import extract  # noqa: E402
from cape.steer.layers import find_layers  # noqa: E402
from cape.steer.models import LoadedModel  # noqa: E402

from steer_tiny import EXPECTED_LAYERS_PATH, TINY_ARCHS, tiny_model  # noqa: E402

N_LAYERS, HIDDEN = 3, 32
#: blocks whose last linear layer is followed by a norm: a bias there is not an addition to the
#: block output, so folded mode is refused (hook mode is used instead)
NOT_FOLDABLE = {"gemma2", "gemma3", "olmo2"}


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_extract_apply_remove_on_every_architecture(arch):
    model, tok = tiny_model(arch, n_layers=N_LAYERS, hidden=HIDDEN)
    path, blocks = find_layers(model)
    assert path == EXPECTED_LAYERS_PATH[arch] and len(blocks) == N_LAYERS
    lm = LoadedModel(model, tok, f"tiny-{arch}", N_LAYERS, HIDDEN, path)
    ex = extract(lm, default_set(), layer="quarter" if N_LAYERS // 4 else 1, batch_size=8)
    assert list(ex.layers["layer"]) == list(range(N_LAYERS)) and ex.n_eval + ex.n_extract == 80
    assert ((ex.layers["ci_low"] <= ex.layers["probe_acc"]) & (ex.layers["probe_acc"] <= ex.layers["ci_high"])).all()
    vec = ex.chosen_vector
    assert vec.layers == [ex.layer] and np.isclose(np.linalg.norm(vec.directions[ex.layer]), 1.0)
    ids = tok(["The sky is blue.", "Ice is"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        base = model(**ids).logits
        with vec.apply(lm, 5.0, unit="norm"):
            hooked = model(**ids).logits
        after = model(**ids).logits
        real = ids["attention_mask"].bool()
        assert not torch.allclose(hooked[real], base[real], atol=1e-4)
        assert torch.equal(after, base)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            with vec.apply(lm, 5.0, unit="norm", mode="folded"):
                folded = model(**ids).logits
        except CapeError as err:  # post-norm blocks (Gemma 2/3, OLMo 2) cannot fold: said so
            assert arch in NOT_FOLDABLE and "hook" in str(err), (arch, str(err))
        else:
            assert arch not in NOT_FOLDABLE
            torch.testing.assert_close(folded[real], hooked[real], atol=1e-4, rtol=1e-4)
        state = model.state_dict()
        assert set(state) == set(weights) and all(torch.equal(state[k], weights[k]) for k in weights)
        assert torch.equal(model(**ids).logits, base)
