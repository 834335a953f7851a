"""Packaging for gearman-frame: shell-command and Python jobs over gearmand."""
from setuptools import find_packages, setup

setup(
    name="gearman-frame",
    version="0.1.0",
    description="Run shell-command and Python jobs across a fleet through gearmand",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=[
        "gearman_frame", "gearman_frame.*",
        "send_job_client", "worker_client", "manage_client", "plugins",
    ]),
    install_requires=[
        "python3-gearman==0.1.0",
        "PyYAML>=5.4",
        "rich>=12",
        "prometheus_client>=0.17",
        "croniter>=2.0",
    ],
    package_data={**{name: ["py.typed"] for name in
                     ("gearman_frame", "send_job_client", "worker_client")},
                  "manage_client": ["py.typed", "web_page.html"]},
    extras_require={
        # the job ledger on PostgreSQL (store.url: postgresql://...): psycopg 3, pooled
        "postgresql": ["psycopg[binary]>=3.1", "psycopg-pool>=3.2"],
        # tracing: (OpenTelemetry; OTLP over HTTP to a collector)
        "tracing": ["opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20",
                    "opentelemetry-exporter-otlp-proto-http>=1.20"],
        "test": ["pytest>=7", "pytest-timeout>=2", "psutil>=5.9", "mypy>=1.8",
                 "types-PyYAML", "selenium>=4.10", "psycopg[binary]>=3.1",
                 "psycopg-pool>=3.2", "opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20",
                 "opentelemetry-exporter-otlp-proto-http>=1.20"],
        # `python -m bench --peers`: the same workloads through Celery and RQ
        "peers": ["celery[redis]>=5.3", "rq>=1.15", "dramatiq[redis]>=1.17", "huey>=2.5"],
    },
    entry_points={
        "console_scripts": [
            "runadmin = manage_client.runadmin:entry",
            "runworkers = worker_client.runworkers:entry",
            "sendjob = send_job_client.quick:entry",
        ],
    },
)
