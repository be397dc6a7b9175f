#!/usr/bin/python3
"""Runs one team's Python worker: `python3 worker.py customer_success|payments` (or
TASKER_NAMESPACE), against TASKER_AMQP_URL / TASKER_AMQP_PREFIX. SIGTERM: running steps
finish, then it exits."""
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "sdks", "python"))
sys.path.insert(0, HERE)

from tasker_worker import Worker  # noqa: E402

import customer_success  # noqa: E402
import payments  # noqa: E402

TEAMS = {"customer_success": customer_success.HANDLERS, "payments": payments.HANDLERS}

if __name__ == "__main__":
    namespace = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TASKER_NAMESPACE", "")
    if namespace not in TEAMS:
        sys.exit(f"usage: worker.py {'|'.join(TEAMS)}")
    logging.basicConfig(level=os.environ.get("TASKER_LOG_LEVEL", "info").upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    Worker(namespace=namespace, handlers=TEAMS[namespace], concurrency=10).run()
