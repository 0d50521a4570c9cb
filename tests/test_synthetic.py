import numpy as np

from common.synthetic import make_synthetic


def test_deterministic_and_shaped():
    a = make_synthetic(n_persons=5, images_per_person=4, size=32, seed=3)
    b = make_synthetic(n_persons=5, images_per_person=4, size=32, seed=3)
    c = make_synthetic(n_persons=5, images_per_person=4, size=32, seed=4)
    assert a.images.shape == (20, 32, 32, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    assert a.key == b.key != c.key
    assert not np.array_equal(a.images, c.images)
    assert len(set(a.persons)) == 5
    assert all(len(set(a.ages[a.persons == p])) > 1 for p in set(a.persons))


def test_age_is_learnable_by_a_linear_model_on_unseen_people():
    import cv2
    from sklearn.linear_model import Ridge

    data = make_synthetic(n_persons=60, images_per_person=6, size=64, seed=0)
    x = np.stack([cv2.resize(img, (24, 24), interpolation=cv2.INTER_AREA) for img in data.images])
    x = x.reshape(len(x), -1).astype(float) / 255
    train = np.isin(data.persons, [f"s{i:03d}" for i in range(45)])
    model = Ridge(alpha=1.0).fit(x[train], data.ages[train])
    mae = np.abs(model.predict(x[~train]) - data.ages[~train]).mean()
    baseline = np.abs(data.ages[train].mean() - data.ages[~train]).mean()
    assert mae < 0.6 * baseline, (mae, baseline)
