"""A real S3-protocol server on 127.0.0.1 for the tests: moto's standalone
server (ThreadedMotoServer, as s3fs's own tests run it), and the environment
both S3 clients read: s3fs through tb_attention.files, boto3 inside
TensorBoard's file layer (and a `tensorboard` subprocess, which inherits it)."""
import contextlib
import logging
import os

import pytest

# Credentials moto accepts, and nothing from the machine's own AWS setup:
# no ~/.aws files, no instance metadata (a 1 s timeout each time otherwise),
# one attempt per request (a refused connection fails in milliseconds,
# not after botocore's retries: 12 s measured).
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
       "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}
UNSET = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def fresh_clients():
    """s3fs keeps one filesystem per arguments, with the credentials and
    endpoint it first connected with: forget them after the environment changed."""
    import s3fs
    s3fs.S3FileSystem.clear_instance_cache()


class MotoS3:
    """moto's S3 server on a port of 127.0.0.1; stop()/start() keep its data
    (moto's backends live in this process) and its port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer
        self._cls = ThreadedMotoServer
        self.port = None
        self.start()

    def start(self):
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = self._cls(ip_address="127.0.0.1", port=self.port or 0, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self._server.stop()

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint)


@contextlib.contextmanager
def moto_s3():
    """A MotoS3 with ENV and S3_ENDPOINT set in os.environ while it runs."""
    with pytest.MonkeyPatch.context() as mp:
        for name in UNSET:
            mp.delenv(name, raising=False)
        for name, value in ENV.items():
            mp.setenv(name, value)
        server = MotoS3()
        mp.setenv("S3_ENDPOINT", server.endpoint)
        fresh_clients()
        try:
            yield server
        finally:
            server.stop()
            fresh_clients()
