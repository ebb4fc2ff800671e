{{/*
The broker topology the asya Go sidecar needs on RabbitMQ, and who creates it
(value topology.provision). The sidecar only declares its own queue
passively and publishes to the exchange with the bare actor name as the
routing key, mandatory=false: a queue that is missing, or bound with another
key, loses every message sent to it. So the release creates, before any pod
starts, for every actor of the asya flavor on RabbitMQ: the exchange (topic,
durable), the durable queue asya-<actor> bound with the key <actor>, and the
end queues (sidecar.happyEndQueue, errorEndQueue) bound the same way.
*/}}

{{/*
The actors whose sidecar is the asya flavor on RabbitMQ. Input: $. Output: JSON list.
*/}}
{{- define "asya-actor.rabbitmqActors" -}}
{{- $selected := list }}
{{- range $actor := include "asya-actor.actors" . | fromJsonArray }}
{{- if and (eq $actor.sidecar.flavor "asya") (eq $actor.sidecar.transport "rabbitmq") }}
{{- $selected = append $selected $actor }}
{{- end }}
{{- end }}
{{- toJson $selected }}
{{- end }}

{{/*
The plan: one list of (exchange, queue, routing key) built from the actors,
each binding once. files/topology.py applies or checks it; the operator's
objects are rendered from it. Input: $. Output: JSON {"bindings": [...]}.
*/}}
{{- define "asya-actor.topologyPlan" -}}
{{- $bindings := list }}
{{- range $actor := include "asya-actor.rabbitmqActors" . | fromJsonArray }}
{{- range $name := list $actor.actorName $actor.sidecar.happyEndQueue $actor.sidecar.errorEndQueue }}
{{- $binding := dict "exchange" $actor.sidecar.rabbitmq.exchange "queue" (include "asya-actor.queueName" $name) "routingKey" $name }}
{{- if not (has $binding $bindings) }}
{{- $bindings = append $bindings $binding }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson (dict "bindings" $bindings) }}
{{- end }}

{{/*
The broker settings of an actor's sidecar that decide which broker it is.
The Job reaches one broker, so every actor must name the same one.
*/}}
{{- define "asya-actor.brokerIdentity" -}}
{{- $r := .sidecar.rabbitmq }}
{{- toJson (dict "url" $r.url "urlSecret" $r.urlSecret "host" $r.host "username" $r.username "passwordSecret" $r.passwordSecret) }}
{{- end }}

{{/*
The hook Job's pod: one container in the model image of the first RabbitMQ
actor, run by its interpreter, with the broker variables of its sidecar (same
secret, same sidecar.env overrides and envFrom) and the placement, pull
secrets, host network and security contexts of its pod. The model image,
because the cluster can already pull it and it has a Python; no other image
has to be published or mirrored. Input: dict "root" "actor" "mode"
(apply or check). Output: YAML of the pod spec.
*/}}
{{- define "asya-actor.topologyPodSpec" -}}
{{- $root := .root }}
{{- $a := .actor }}
{{- $base := include "asya-actor.basePodSpec" (dict "root" $root "actor" $a) | fromJson }}
{{- $spec := dict "restartPolicy" "Never" "automountServiceAccountToken" false }}
{{- range $field := list "hostNetwork" "dnsPolicy" "dnsConfig" "imagePullSecrets" "nodeSelector" "tolerations" "affinity" "securityContext" "priorityClassName" "runtimeClassName" }}
{{- if hasKey $base.spec $field }}
{{- $_ := set $spec $field (index $base.spec $field) }}
{{- end }}
{{- end }}
{{- $env := list }}
{{- range $entry := include "asya-actor.sidecarEnv" (dict "root" $root "actor" $a) | fromJsonArray }}
{{- if hasPrefix "ASYA_RABBITMQ_" $entry.name }}
{{- $env = append $env $entry }}
{{- end }}
{{- end }}
{{- $t := $root.Values.topology }}
{{- if $t.rabbitmq.managementUrl }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_MANAGEMENT_URL" "value" $t.rabbitmq.managementUrl) }}
{{- else }}
{{- $env = append $env (dict "name" "ASYA_RABBITMQ_MANAGEMENT_PORT" "value" (include "asya-actor.digits" $t.rabbitmq.managementPort)) }}
{{- end }}
{{- $env = append $env (dict "name" "ASYA_TOPOLOGY_WAIT_SECONDS" "value" (include "asya-actor.digits" $t.waitSeconds)) }}
{{- $container := dict
    "name" (include "asya-actor.topologyContainerName" $root)
    "image" $base.runtime.image
    "command" (list $a.workload.pythonExecutable "-c" ($root.Files.Get "files/topology.py") .mode (include "asya-actor.topologyPlan" $root))
    "env" $env
    "securityContext" $base.runtime.securityContext }}
{{- with $base.runtime.imagePullPolicy }}
{{- $_ := set $container "imagePullPolicy" . }}
{{- end }}
{{- with $a.sidecar.envFrom }}
{{- $_ := set $container "envFrom" . }}
{{- end }}
{{- with $t.resources }}
{{- $_ := set $container "resources" (deepCopy .) }}
{{- end }}
{{- $_ := set $spec "containers" (list $container) }}
{{- toYaml $spec }}
{{- end }}
