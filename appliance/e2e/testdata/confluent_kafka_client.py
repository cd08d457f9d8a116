#!/usr/bin/python3
"""Kafka's own clients against katka: confluent-kafka-python (librdkafka).

Run by appliance/e2e/confluent_test.go against a real `katka serve`:

  confluent_kafka_client.py txn BOOTSTRAP TOPIC
      A transactional producer commits c1..c3, aborts a1..a3, commits c4
      (the partitions are given, so both partitions of TOPIC get data of
      every transaction). Prints one line "txn ok".

  confluent_kafka_client.py admin BOOTSTRAP TOPIC
      AdminClient.create_topics with segment.bytes and compression.type=lz4,
      describe_configs, alter_configs (segment.bytes and
      compression.type=zstd), describe_configs again, and alter_configs of an
      unknown config name (must fail with INVALID_CONFIG). Prints one JSON
      object with what it saw.

Any failure raises (non-zero exit, traceback on stderr).
"""

import json
import sys

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

TIMEOUT = 20  # seconds for every call that waits on katka


def txn(bootstrap, topic):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": "confluent-py-txn",
        "transaction.timeout.ms": 10000,
        "linger.ms": 5,
    })
    p.init_transactions(TIMEOUT)
    failed = []

    def report(err, msg):
        if err is not None:
            failed.append(str(err))

    def transaction(values, commit):
        p.begin_transaction()
        for i, v in enumerate(values):
            p.produce(topic, value=v.encode(), partition=i % 2, on_delivery=report)
        if commit:
            p.commit_transaction(TIMEOUT)  # flushes first
        else:
            p.flush(TIMEOUT)  # the aborted records reach the log first
            p.abort_transaction(TIMEOUT)
        if failed:
            raise RuntimeError("delivery failed: %s" % failed)

    transaction(["c1", "c2", "c3"], True)
    transaction(["a1", "a2", "a3"], False)
    transaction(["c4"], True)
    print("txn ok")


def describe(admin, topic, names):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(TIMEOUT)
    return {n: configs[n].value for n in names}


def admin_calls(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = ["segment.bytes", "compression.type"]
    out = {}
    new = NewTopic(topic, num_partitions=1, replication_factor=1,
                   config={"segment.bytes": "131072", "compression.type": "lz4"})
    admin.create_topics([new])[topic].result(TIMEOUT)
    out["created"] = describe(admin, topic, names)

    # AlterConfigs (API 33) replaces the topic's whole set.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                         set_config={"segment.bytes": "262144", "compression.type": "zstd"})
    admin.alter_configs([res])[res].result(TIMEOUT)
    out["altered"] = describe(admin, topic, names)

    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"no.such.config": "1"})
    try:
        admin.alter_configs([bad])[bad].result(TIMEOUT)
        out["unknown"] = "accepted"
    except KafkaException as e:
        err = e.args[0]
        out["unknown"] = err.name() if isinstance(err, KafkaError) else str(err)
    out["after_unknown"] = describe(admin, topic, names)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    mode, bootstrap, topic = sys.argv[1:4]
    {"txn": txn, "admin": admin_calls}[mode](bootstrap, topic)
