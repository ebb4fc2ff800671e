"""The fields KEDA documents for the objects the chart renders, as JSON schemas.

kubernetes-validate knows only Kubernetes' own kinds, so the ScaledObject is
checked here against the fields of KEDA's reference pages (keda.sh/docs, 2.x):
"ScaledObject specification", and the scalers "RabbitMQ Queue" and
"AWS SQS Queue". Every mapping is closed (additionalProperties: false), so a
misspelt or invented field fails, and trigger metadata values must be strings,
as KEDA reads them.
"""

STRING = {"type": "string"}
NON_NEGATIVE = {"type": "integer", "minimum": 0}


def closed(properties, required=()):
    return {"type": "object", "additionalProperties": False,
            "properties": properties, "required": list(required)}


def trigger(trigger_type, metadata_keys, required_metadata):
    return closed({
        "type": {"const": trigger_type},
        "name": STRING,
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "metadata": closed({key: STRING for key in metadata_keys}, required_metadata),
        "authenticationRef": closed({"name": STRING, "kind": {
            "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}, ["name"]),
    }, ["type", "metadata"])


RABBITMQ_TRIGGER = trigger(
    "rabbitmq",
    ["host", "hostFromEnv", "protocol", "mode", "value", "activationValue", "queueName",
     "vhostName", "usernameFromEnv", "passwordFromEnv", "unsafeSsl", "useRegex",
     "excludeUnacknowledged", "pageSize", "operation", "timeout"],
    ["queueName", "mode", "value"])

SQS_TRIGGER = trigger(
    "aws-sqs-queue",
    ["queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion",
     "awsEndpoint", "identityOwner", "scaleOnInFlight", "scaleOnDelayed"],
    ["queueURL", "awsRegion"])

SCALED_OBJECT = closed({
    "apiVersion": {"const": "keda.sh/v1alpha1"},
    "kind": {"const": "ScaledObject"},
    "metadata": {"type": "object", "required": ["name"]},
    "spec": closed({
        "scaleTargetRef": closed({"apiVersion": STRING, "kind": STRING, "name": STRING,
                                  "envSourceContainerName": STRING}, ["name"]),
        "pollingInterval": NON_NEGATIVE,
        "cooldownPeriod": NON_NEGATIVE,
        "initialCooldownPeriod": NON_NEGATIVE,
        "idleReplicaCount": NON_NEGATIVE,
        "minReplicaCount": NON_NEGATIVE,
        "maxReplicaCount": NON_NEGATIVE,
        "fallback": {"type": "object"},
        "advanced": {"type": "object"},
        "triggers": {"type": "array", "minItems": 1,
                     "items": {"oneOf": [RABBITMQ_TRIGGER, SQS_TRIGGER]}},
    }, ["scaleTargetRef", "triggers"]),
}, ["apiVersion", "kind", "metadata", "spec"])
