"""Scale-out on Ray Serve (gptrt.ray_serve) on a local two-node Ray cluster of this machine (CPU
backend): requests spread over the replicas, a replica killed mid-load is replaced, and no
accepted request is lost (clients retry a request whose connection broke: completions with a
seed are idempotent). Skipped, saying so, where Ray cannot be imported."""
import concurrent.futures
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[serve]')")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'ray[serve]')")
from ray.cluster_utils import Cluster  # noqa: E402

import gptrt  # noqa: E402
import gptrt.ray_serve  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.abspath(os.path.join(HERE, "..", "data", "gpt2-tiny", "hf"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    pkg = os.path.dirname(os.path.dirname(gptrt.__file__))
    ray.init(address=c.address, runtime_env={"env_vars": {"PYTHONPATH": pkg}}, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(gptrt.ray_serve.deployment(hf=TINY, threads=1, num_cpus=1, min_replicas=2, max_replicas=2,
                                         slots=4), route_prefix="/", name="gptrt")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
    c.shutdown()


def post(url, body, tries=20):
    """POSTs a completion, retrying a broken connection, a 5xx (a replica that died) or a 408/429."""
    last = None
    for _ in range(tries):
        req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read()), r.headers["x-gptrt-replica"]
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code not in (408, 429):  # (busy: retried after a pause)
                raise
            last = e
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"no answer after {tries} tries: {last!r}")


def replicas():
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]


def test_requests_spread_over_replicas_and_survive_a_killed_one(cluster):
    want = gptrt.generate(gptrt.build(hf=TINY), [[11, 12, 13]], max_new_tokens=6)[0]
    body = {"prompt": [11, 12, 13], "max_tokens": 6, "temperature": 0}
    got, who = post(cluster, body)
    assert got["choices"][0]["token_ids"] == want
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seen = {r for _, r in pool.map(lambda _: post(cluster, body), range(40))}
    assert len(seen) == 2, seen  # both replicas answered
    # Kill one replica while requests are in flight: every request is still answered, and Serve
    # brings the deployment back to two replicas.
    victim = replicas()[0]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, cluster, dict(body, seed=i)) for i in range(60)]
        time.sleep(0.3)
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        results = [f.result() for f in futures]
    assert all(r["choices"][0]["token_ids"] == want for r, _ in results)
    deadline = time.time() + 120
    while time.time() < deadline:
        status = serve.status().applications["gptrt"]
        if status.status == "RUNNING" and len(replicas()) == 2 and victim["name"] not in {
                a["name"] for a in replicas()}:
            break
        time.sleep(1)
    assert len(replicas()) == 2 and victim["name"] not in {a["name"] for a in replicas()}
    _, who = post(cluster, body)
    assert who


def test_bad_requests_get_an_error_object(cluster):
    req = urllib.request.Request(cluster + "/v1/completions", b"{not json", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 400 and "error" in json.loads(e.value.read())
    with pytest.raises(urllib.error.HTTPError) as e:
        post(cluster, {"prompt": [5000], "max_tokens": 2})
    assert e.value.code == 400 and "vocabulary" in json.loads(e.value.read())["error"]["message"]
