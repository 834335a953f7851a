"""Baseline worker: plain python3-gearman GearmanWorker threads, as users wrote them before.

``python -m bench.raw_worker PORT THREADS MODE`` where MODE is ``reverse`` (return the
data reversed) or ``shell`` (run the data with subprocess.run(shell=True, timeout=0.5)).
"""
import subprocess
import sys
import threading

import python3_gearman


def reverse(worker, job):
    return job.data[::-1]


def shell(worker, job):
    try:
        subprocess.run(job.data, shell=True, timeout=0.5)
        return "ok"
    except subprocess.TimeoutExpired:
        return "timeout"


def serve(port, mode, index):
    worker = python3_gearman.GearmanWorker([f"127.0.0.1:{port}"])
    worker.set_client_id(f"raw.{index}")
    worker.register_task(f"raw_{mode}", reverse if mode == "reverse" else shell)
    worker.work()


def main():
    port, threads, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    workers = [threading.Thread(target=serve, args=(port, mode, i), daemon=True)
               for i in range(threads)]
    for thread in workers:
        thread.start()
    print("ready", flush=True)
    for thread in workers:
        thread.join()


if __name__ == "__main__":
    main()
