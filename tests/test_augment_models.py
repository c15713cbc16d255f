"""Weak / strong views and the models."""
import pytest
import torch

from sslteach import augment
from sslteach.models import MLP, SmallCNN, WideResNet, count_parameters, make_model


def test_weak_view_is_a_shift_of_the_image():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    w = augment.translate(x, 0.125)
    assert w.shape == x.shape
    # 12.5% of 8 pixels = a shift of at most one pixel: the centre of each view is the image moved by (dy, dx)
    for i in range(64):
        assert any(torch.equal(w[i, :, 1:7, 1:7], x[i, :, 1 + dy:7 + dy, 1 + dx:7 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    same = [(w[i] == x[i]).all() for i in range(64)]
    assert 0 < sum(same) < 64  # some images unshifted (dx = dy = 0), most shifted


def test_flip_only_when_asked():
    torch.manual_seed(0)
    x = torch.zeros(200, 1, 8, 8)
    x[:, :, :, 0] = 1.0  # a bright left column
    no_flip = augment.Augmenter("image", flip=False, translate_frac=0.0).weak(x)
    flip = augment.Augmenter("image", flip=True, translate_frac=0.0).weak(x)
    assert no_flip[:, :, :, -1].sum() == 0
    assert 0 < flip[:, 0, 0, -1].sum() < 200  # about half flipped


def test_strong_view_random_per_sample_and_in_range():
    torch.manual_seed(0)
    one = torch.rand(1, 1, 8, 8)
    x = one.repeat(32, 1, 1, 1)
    s = augment.Augmenter("image").strong(x)
    assert s.shape == x.shape and float(s.min()) >= 0 and float(s.max()) <= 1
    distinct = {tuple(v.flatten().round(decimals=4).tolist()) for v in s}
    assert len(distinct) > 25  # every image its own draw


def test_strong_view_rgb_and_cutout():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    s = augment.randaugment(x, n_ops=0, cutout=0.5)
    gray = (s == 0.5).all(dim=1)  # the cutout square is gray on every channel
    assert (gray.flatten(1).sum(1) >= 8 * 8).all()


def test_points_jitter():
    torch.manual_seed(0)
    a = augment.Augmenter("points", weak_sigma=0.05, strong_sigma=0.2)
    x = torch.zeros(10000, 2)
    assert abs(a.weak(x).std().item() - 0.05) < 0.005
    assert abs(a.strong(x).std().item() - 0.2) < 0.01


def test_augmenter_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        augment.Augmenter("audio")


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_models_return_logits_and_features(shape):
    m = make_model("auto", shape, 10)
    logits, feats = m(torch.rand(4, *shape))
    assert logits.shape == (4, 10) and feats.shape == (4, m.feature_dim)
    assert isinstance(m, MLP if len(shape) == 1 else SmallCNN)


def test_wrn28_2_size_and_guard():
    m = make_model("wrn28_2", (3, 32, 32), 10)
    assert isinstance(m, WideResNet) and 1.4e6 < count_parameters(m) < 1.6e6  # 1.5 M as in FixMatch
    with pytest.raises(ValueError, match="32x32"):
        make_model("wrn28_2", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="unknown model"):
        make_model("resnet50", (1, 8, 8), 10)


def test_cutout_setting_reaches_the_strong_view(monkeypatch):
    """``train(..., cutout=f)`` gives the strong view a Cutout square of side f * H (the real_images preset uses it);
    a bad value is a one-line error naming the setting."""
    import sslteach.augment as aug_mod
    from sslteach import train

    seen = []
    orig = aug_mod.for_dataset

    def spy(ds, **kw):
        a = orig(ds, **kw)
        seen.append(a.cutout)
        return a

    monkeypatch.setattr(aug_mod, "for_dataset", spy)
    train("fixmatch", "digits", steps=2, cutout=0.25, progress=False, cache=False, eval_size=10)
    assert seen == [0.25]
    with pytest.raises(ValueError, match="cutout must be"):
        train("fixmatch", "digits", steps=2, cutout=1.5, progress=False, cache=False)
    x = torch.full((64, 1, 28, 28), 1.0)
    gray = (aug_mod.cutout_(x, 0.25) == 0.5).flatten(1).sum(1)
    assert gray.max().item() == 7 * 7  # a 7x7 square where it fits inside the image
