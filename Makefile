.PHONY: quickstart test bench clean
quickstart:  ## set up .venv and run the main job on the bundled offline model
	scripts/setup.sh all
	.venv/bin/bushu quickstart

test:  ## set up .venv and run the whole test suite
	scripts/test.sh

bench:  ## compare backends side by side (writes bench/results/*.json and *.md)
	scripts/setup.sh all
	.venv/bin/python bench/backends.py

clean:
	rm -rf .venv build dist src/*.egg-info quickstart-out bench/results
