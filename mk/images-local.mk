# Images without a Docker daemon: Debian's buildah (chroot isolation, vfs storage, as root)
# builds the Dockerfiles in images/ unchanged on a local debootstrap base, then smoke-runs
# each image as uid 10001 (images/build_local.py says what each smoke run checks).
#   make images-local                 # all three
#   make images-local IMAGES_LOCAL=engine
# then `python bench/run.py image` times the engine image's cold start as a Job runs it (bench/bench_image.py).

IMAGES_LOCAL ?= engine operator dashboard

.PHONY: images-local buildah-deps

buildah-deps:  ## Debian's buildah and debootstrap (installed with apt-get when missing)
	@command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
	  echo "installing buildah and debootstrap with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null; }

images-local: $(STAMP) buildah-deps  ## build the three images with buildah (no Docker) and smoke-run each as uid 10001
	$(PYTHON) images/build_local.py $(IMAGES_LOCAL)
