"""``python -m ray_orch.demo``: the customer-service demo (options: ``--help``)."""

import sys

from ray_orch.demo.customer_service import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
