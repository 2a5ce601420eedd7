# The two commands of the README. Both set up what they need first (idempotent).
.PHONY: run test bootstrap

bootstrap:
	@sh scripts/bootstrap.sh

run: bootstrap
	.venv/bin/gisplatform up

test:
	@sh scripts/bootstrap.sh --test
	.venv/bin/python -m pytest
