"""dfz_cert against pyzmq's zmq.auth: files pyzmq writes load in C with the
same keys, and files dfz_cert writes load in pyzmq with the same keys.
Usage: cert_pyzmq.py PATH/TO/dfz_cert_test"""
import os
import subprocess
import sys
import tempfile

import zmq
import zmq.auth


def c_load(tool, path):
    out = subprocess.run([tool, "load", path], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, (path, out.stderr)
    keys = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    return keys.get("public"), keys.get("secret")


def main():
    tool = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        # pyzmq writes, C reads (with and without metadata).
        for name, meta in (("py", None), ("pymeta", {"name": "x", "role": "consumer"})):
            pub_path, sec_path = zmq.auth.create_certificates(d, name, metadata=meta)
            pub, sec = zmq.auth.load_certificate(sec_path)
            assert c_load(tool, pub_path) == (pub.decode(), None), name
            assert c_load(tool, sec_path) == (pub.decode(), sec.decode()), name
        # C writes, pyzmq reads; the keys form a working CURVE pair.
        out = subprocess.run([tool, "save", d, "fromc"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        pub_path, sec_path = out.stdout.split()
        assert pub_path == os.path.join(d, "fromc.key") and sec_path == pub_path + "_secret"
        assert oct(os.stat(sec_path).st_mode & 0o777) == "0o600"
        assert oct(os.stat(pub_path).st_mode & 0o777) == "0o644"
        pub, sec = zmq.auth.load_certificate(sec_path)
        pub2, none = zmq.auth.load_certificate(pub_path)
        assert pub == pub2 and none is None
        assert zmq.curve_public(sec) == pub
        assert c_load(tool, sec_path) == (pub.decode(), sec.decode())
        assert zmq.auth.load_certificates(d)[pub] is True
        # A second save refuses and changes nothing.
        before = open(sec_path, "rb").read()
        out = subprocess.run([tool, "save", d, "fromc"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and "refusing to overwrite" in out.stderr, out
        assert open(sec_path, "rb").read() == before
    print("cert_pyzmq: ok")


if __name__ == "__main__":
    main()
