"""The one resource-request model: what the form, the REST API and notebook scalers share."""

import pytest

from workbench.resources import (
    ClusterView,
    InvalidRequest,
    defaults,
    parse_memory_mb,
    parse_runtime_min,
    validate_request,
)
from workbench.slurm.models import Association, Node, Partition


def view(accounts=("startup-helios",)) -> ClusterView:
    nodes = [
        Node("h100-1", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4, 1),
        Node("h100-2", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4, 0),
        Node("a100-1", "127.0.0.1", "idle", (), ("gpu-a100",), 16, 16, 65536, 0, "a100", 4, 0),
        Node("cpu-1", "127.0.0.1", "idle", (), ("cpu",), 8, 8, 32768),
    ]
    parts = [
        Partition("gpu", (), 720, 60),
        Partition("gpu-a100", (), 480, 60),
        Partition("cpu", (), 1440, 60, default=True),
    ]
    assocs = [Association(a, "alice") for a in accounts] + [Association("research-medai", "bob")]
    return ClusterView.build(nodes, parts, assocs, "alice")


GOOD = {"partition": "gpu", "account": "startup-helios", "gpus": 2, "gpu_type": "h100",
        "cpus": 8, "memory": "32G", "runtime": "02:00:00"}


def test_view_offers_partitions_and_only_own_accounts():
    v = view()
    assert set(v.partitions) == {"gpu", "gpu-a100", "cpu"}
    assert v.accounts == ("startup-helios",)
    gpu = v.partitions["gpu"]
    assert (gpu.gpu_types, gpu.gpus_per_node, gpu.nodes, gpu.idle_gpus) == (("h100",), 4, 2, 7)
    assert v.partitions["cpu"].gpus_per_node == 0


def test_valid_request():
    r = validate_request(GOOD, view())
    assert (r.partition, r.account, r.gpus, r.gpu_type, r.cpus) == ("gpu", "startup-helios", 2,
                                                                     "h100", 8)
    assert r.memory_mb == 32768 and r.runtime_min == 120
    assert r.gres == "gpu:h100:2" and r.time == "02:00:00" and r.gpu_hours == 4


def test_missing_fields_take_defaults_of_the_chosen_partition():
    r = validate_request({"partition": "gpu-a100"}, view())
    assert (r.gpu_type, r.gpus) == ("a100", 1)
    r = validate_request({"partition": "cpu"}, view())
    assert (r.gpu_type, r.gpus, r.gres) == ("", 0, "")
    r = validate_request({}, view())
    assert r.partition == "gpu" and r.account == "startup-helios"


def test_runtime_in_minutes():
    assert validate_request({**GOOD, "runtime": 90}, view()).runtime_min == 90
    assert validate_request({**GOOD, "runtime": "90"}, view()).runtime_min == 90


@pytest.mark.parametrize("change,field", [
    ({"partition": "nope"}, "partition"),
    ({"account": "research-medai"}, "account"),
    ({"gpus": 99}, "gpus"),
    ({"gpus": -1}, "gpus"),
    ({"gpus": "2"}, "gpus"),
    ({"gpus": True}, "gpus"),
    ({"gpu_type": "a100"}, "gpu_type"),
    ({"cpus": 0}, "cpus"),
    ({"cpus": 17}, "cpus"),
    ({"memory": "lots"}, "memory"),
    ({"memory": "65G"}, "memory"),
    ({"runtime": "13:00:00"}, "runtime"),
    ({"runtime": 0}, "runtime"),
    ({"runtime": "1:00"}, "runtime"),
    ({"memory": "8G\n#SBATCH --uid=0"}, "memory"),
    ({"gpu_type": "h100\n#SBATCH --exclusive"}, "gpu_type"),
    ({"account": "startup-helios\n#SBATCH -A research-medai"}, "account"),
    ({"partition": "gpu --exclusive"}, "partition"),
    ({"runtime": "01:00:00\n#SBATCH --qos=high"}, "runtime"),
    ({"evil": "x"}, "evil"),
])
def test_refusals_name_the_field(change, field):
    with pytest.raises(InvalidRequest) as e:
        validate_request({**GOOD, **change}, view())
    assert e.value.field == field
    assert e.value.message


def test_user_without_account_is_told_what_to_do():
    with pytest.raises(InvalidRequest, match="no Slurm project account"):
        validate_request(GOOD, view(accounts=()))


def test_defaults_fit_the_view():
    v = view()
    assert validate_request(defaults(v), v).partition == "gpu"


def test_parse_helpers():
    assert parse_memory_mb("16G") == 16384 and parse_memory_mb("512M") == 512
    assert parse_memory_mb(2048) == 2048
    assert parse_runtime_min("1-00:00:00") == 1440
    for bad in ("16 G", "-1G", "", None, 1.5):
        with pytest.raises(ValueError):
            parse_memory_mb(bad)
