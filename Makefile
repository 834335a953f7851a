# Shortcuts; the scripts work without make.
.PHONY: demo test bench soak fleet
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/setup.sh && .venv/bin/python -m bench
soak:
	bash scripts/setup.sh && .venv/bin/python -m bench.soak
fleet:
	bash scripts/fleet.sh
