"""Frozen-backbone benchmark cells: features once per framework, an age head per fold.

Each framework computes its own backbone's features of every aligned face (cached in the
benchmark folder) and trains its own linear age head with its own loss implementation, so the
comparison covers the frameworks' numerics end to end, while costing seconds per fold.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.cells import pack_result
from common import results
from common.cache import FaceArrays
from common.config import Config, to_dict
from common.losses import decode_outputs, loss_spec

HEAD_DEFAULTS = {"epochs": 60, "lr": 1e-3, "batch_size": 64, "weight_decay": 1e-4}


def _atomic_save(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    results.atomic_write_bytes(path, buf.getvalue())


class FrozenRunner:
    def __init__(self, preset: dict, faces: FaceArrays, out: Path):
        self.preset, self.faces, self.out = preset, faces, out
        self.head = {**HEAD_DEFAULTS, **(preset.get("head") or {})}
        self.features: dict[str, tuple[np.ndarray, dict]] = {}

    def _features(self, cell, cfg: Config) -> tuple[np.ndarray, dict]:
        key = f"{cell.framework}-{cell.model}-{cell.weights}-{cfg.data.size}px"
        key += f"-{self.faces.key[:12]}"
        if key not in self.features:
            path = self.out / "features" / f"{key}.npy"
            info_path = path.with_suffix(".json")
            if path.is_file() and info_path.is_file():
                import json

                feats, info = np.load(path), json.loads(info_path.read_text())
            else:
                extract = torch_features if cell.framework == "torch" else keras_features
                t0 = time.perf_counter()
                feats, info = extract(cell.model, cell.weights, self.faces, cfg.data.size)
                info["seconds"] = time.perf_counter() - t0
                info["images_per_s"] = len(feats) / info["seconds"]
                _atomic_save(path, feats)
                results.atomic_write_json(info_path, info)
            self.features[key] = (feats, info)
        return self.features[key]

    def run(self, cell, cfg: Config, fold, fold_hash: str) -> dict:
        feats, info = self._features(cell, cfg)
        parts = fold.indices(self.faces.persons)
        train_head = torch_head if cell.framework == "torch" else keras_head
        t0 = time.perf_counter()
        head_outputs, best, rows = train_head(
            feats, self.faces.ages, parts, cell.loss, cfg, self.head
        )
        train_seconds = time.perf_counter() - t0
        metrics = results.run_metrics(
            framework=cell.framework,
            versions=info["versions"],
            device=info["device"],
            cfg={**to_dict(cfg), "head": self.head},
            fold=fold,
            fold_hash=fold_hash,
            preprocess=self.faces.key,
            pretrained=info["pretrained"],
            input_size=cfg.data.size,
            log_rows=rows,
            best=best,
            train_seconds=train_seconds,
        )
        metrics["feature_seconds"] = info["seconds"]
        metrics, preds = results.evaluate_fold(
            lambda idx: head_outputs(feats[idx]),
            self.faces,
            parts,
            cell.loss,
            metrics,
            self.out,
            write=False,
        )
        metrics["eval_images_per_s"] = info["images_per_s"]  # the backbone dominates inference
        return pack_result(cell, fold, metrics, preds)


def _val_mae(outputs, ages, loss) -> float:
    pred, _ = decode_outputs(outputs, loss)
    return float(np.abs(pred - ages).mean())


# ------------------------------------------------------------------ PyTorch


def torch_features(model_name: str, weights: str, faces: FaceArrays, size: int):
    import torch

    from torch_impl.models import create_model
    from torch_impl.preprocess import resolve_device, to_input

    device = resolve_device("auto")
    torch.manual_seed(0)  # the random initialisation, when weights=none, is reproducible
    model = create_model(model_name, 1, weights, size).to(device).eval()
    feats = []
    with torch.no_grad():
        for start in range(0, len(faces), 64):
            batch = torch.from_numpy(faces.images[start : start + 64]).to(device)
            x = to_input(batch, model.entry.mean, model.entry.std, size)
            feats.append(model.backbone(x).float().cpu().numpy())
    return np.concatenate(feats), {
        "pretrained": model.pretrained,
        "device": str(device),
        "versions": {"torch": torch.__version__},
    }


def torch_head(feats, ages, parts, loss_name, cfg: Config, head: dict):
    import torch

    from torch_impl.losses import make_loss

    torch.manual_seed(cfg.seed)
    x = torch.from_numpy(feats).float()
    y = torch.from_numpy(ages).float()
    tr, va = (torch.from_numpy(parts[p]) for p in ("train", "val"))
    loss = loss_spec(loss_name)
    linear = torch.nn.Linear(x.shape[1], loss.outputs(cfg.data.num_classes))
    bias = loss.head_bias(ages[parts["train"]])
    if bias is not None:
        torch.nn.init.zeros_(linear.weight)
        torch.nn.init.constant_(linear.bias, bias)
    opt = torch.optim.AdamW(linear.parameters(), lr=head["lr"], weight_decay=head["weight_decay"])
    loss_fn = make_loss(loss_name, cfg.loss.lambda_mean, cfg.loss.lambda_var, cfg.loss.label_sigma)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, rows = {"val_mae": float("inf"), "epoch": -1}, None, []
    for epoch in range(head["epochs"]):
        t0 = time.perf_counter()
        perm = tr[torch.randperm(len(tr), generator=gen)]
        for start in range(0, len(perm), head["batch_size"]):
            idx = perm[start : start + head["batch_size"]]
            loss = loss_fn(linear(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            val = _val_mae(linear(x[va]).numpy(), ages[parts["val"]], loss_name)
        rows.append({"epoch": epoch, "val_mae": val, "train_images_per_s": len(tr) / seconds})
        if val < best["val_mae"]:
            best = {"val_mae": val, "epoch": epoch}
            best_state = {k: v.clone() for k, v in linear.state_dict().items()}
    linear.load_state_dict(best_state)

    @torch.no_grad()
    def head_outputs(features: np.ndarray) -> np.ndarray:
        return linear(torch.from_numpy(features).float()).numpy()

    return head_outputs, best, rows


# ------------------------------------------------------------------ Keras


def keras_features(model_name: str, weights: str, faces: FaceArrays, size: int):
    import keras

    from tf_impl.models import backbone_of, create_model

    keras.utils.set_random_seed(0)
    model = create_model(model_name, 1, weights, size)
    backbone, preprocess = backbone_of(model), model.get_layer("preprocess")
    feats = []
    for start in range(0, len(faces), 64):
        batch = faces.images[start : start + 64].astype("float32")
        feats.append(keras.ops.convert_to_numpy(backbone(preprocess(batch), training=False)))
    return np.concatenate(feats), {
        "pretrained": model.pretrained,
        "device": "cpu",
        "versions": {"keras": keras.__version__, "backend": keras.config.backend()},
    }


_KERAS_HEADS: dict = {}


def keras_head(feats, ages, parts, loss_name, cfg: Config, head: dict):
    import keras

    from tf_impl.losses import make_loss

    key = (feats.shape[1], loss_name, cfg.data.num_classes)
    if key not in _KERAS_HEADS:  # one compiled head per shape and loss, re-initialised per fold
        keras.utils.set_random_seed(cfg.seed)
        inputs = keras.Input((feats.shape[1],))
        model = keras.Model(
            inputs, keras.layers.Dense(loss_spec(loss_name).outputs(cfg.data.num_classes))(inputs)
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(head["lr"], weight_decay=head["weight_decay"]),
            loss=make_loss(
                loss_name, cfg.loss.lambda_mean, cfg.loss.lambda_var, cfg.loss.label_sigma
            ),
        )
        _KERAS_HEADS[key] = (model, [w.copy() for w in model.get_weights()])
    model, initial = _KERAS_HEADS[key]
    weights = [w.copy() for w in initial]
    bias = loss_spec(loss_name).head_bias(ages[parts["train"]])
    if bias is not None:
        weights = [np.zeros_like(weights[0]), np.full_like(weights[1], bias)]
    model.set_weights(weights)
    for var in model.optimizer.variables:  # a fresh optimiser state for every fold
        if not var.path.endswith("learning_rate"):  # the rate is a variable too: keep it
            var.assign(np.zeros(var.shape, dtype=var.dtype))
    rng = np.random.default_rng(cfg.seed)
    tr, va = parts["train"], parts["val"]
    best, best_weights, rows = {"val_mae": float("inf"), "epoch": -1}, None, []
    for epoch in range(head["epochs"]):
        t0 = time.perf_counter()
        perm = tr[rng.permutation(len(tr))]
        for start in range(0, len(perm), head["batch_size"]):
            idx = perm[start : start + head["batch_size"]]
            model.train_on_batch(feats[idx], ages[idx].astype("float32"))
        seconds = time.perf_counter() - t0
        val = _val_mae(model.predict_on_batch(feats[va]), ages[va], loss_name)
        rows.append({"epoch": epoch, "val_mae": val, "train_images_per_s": len(tr) / seconds})
        if val < best["val_mae"]:
            best, best_weights = {"val_mae": val, "epoch": epoch}, model.get_weights()
    model.set_weights(best_weights)

    def head_outputs(features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros((0, model.output_shape[-1]), np.float32)
        return np.asarray(model.predict_on_batch(features))

    return head_outputs, best, rows
