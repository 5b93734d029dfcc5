{{/*
The agent's config: each enabled preset's fragment (below), then `.Values.config` merged over it
(mergeOverwrite: the user's keys win), then each preset's components appended to the pipelines'
lists, as the opentelemetry-collector chart does.
*/}}
{{- define "vigil.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.presets.logsCollection.enabled -}}
{{- $config = include "vigil.applyLogsCollection" (dict "Values" .Values "Release" .Release "Chart" .Chart "config" $config) | fromYaml -}}
{{- end -}}
{{- if .Values.presets.hostMetrics.enabled -}}
{{- $config = include "vigil.applyHostMetrics" (dict "Values" .Values "config" $config) | fromYaml -}}
{{- end -}}
{{- if .Values.presets.kubeletMetrics.enabled -}}
{{- $config = include "vigil.applyKubeletMetrics" (dict "Values" .Values "config" $config) | fromYaml -}}
{{- end -}}
{{- if .Values.presets.kubernetesAttributes.enabled -}}
{{- $config = include "vigil.applyKubernetesAttributes" (dict "Values" .Values "config" $config) | fromYaml -}}
{{- end -}}
{{- if .Values.presets.clusterMetrics.enabled -}}
{{- $config = include "vigil.applyClusterMetrics" (dict "Values" .Values "Release" .Release "Chart" .Chart "config" $config) | fromYaml -}}
{{- end -}}
{{- if or .Values.presets.annotationDiscovery.logs.enabled .Values.presets.annotationDiscovery.metrics.enabled -}}
{{- $config = include "vigil.applyAnnotationDiscovery" (dict "Values" .Values "config" $config) | fromYaml -}}
{{- end -}}
{{- if .Values.presets.detection.enabled -}}
{{- $config = include "vigil.applyDetection" (dict "Values" .Values "config" $config) | fromYaml -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Appends `item` to the list at pipelines.<pipeline>.<key> unless it is there; the pipeline must exist. */}}
{{- define "vigil.appendTo" -}}
{{- $p := index .config.service.pipelines .pipeline -}}
{{- if $p -}}
{{- $list := default (list) (index $p .key) -}}
{{- if not (has .item $list) -}}
{{- $_ := set $p .key (append $list .item) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Inserts `item` into pipelines.<pipeline>.processors right after memory_limiter (or first). */}}
{{- define "vigil.insertProcessor" -}}
{{- $p := index .config.service.pipelines .pipeline -}}
{{- if $p -}}
{{- $list := default (list) $p.processors -}}
{{- if not (has .item $list) -}}
{{- $out := list -}}
{{- $done := false -}}
{{- if not (has "memory_limiter" $list) -}}
{{- $out = append $out .item -}}
{{- $done = true -}}
{{- end -}}
{{- range $list -}}
{{- $out = append $out . -}}
{{- if and (eq . "memory_limiter") (not $done) -}}
{{- $out = append $out $.item -}}
{{- $done = true -}}
{{- end -}}
{{- end -}}
{{- $_ := set $p "processors" $out -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vigil.applyLogsCollection" -}}
{{- $config := mergeOverwrite (include "vigil.logsCollectionConfig" . | fromYaml) .config -}}
{{- if .Values.presets.logsCollection.storeCheckpoints -}}
{{- $_ := set $config.service "extensions" (append (without $config.service.extensions "file_storage") "file_storage" | uniq) -}}
{{- end -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "logs" "key" "receivers" "item" "filelog") -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.logsCollectionConfig" -}}
{{- if .Values.presets.logsCollection.storeCheckpoints }}
extensions:
  file_storage:
    directory: {{ .Values.stateDir }}
    create_directory: true
{{- end }}
receivers:
  filelog:
    include: [/var/log/pods/*/*/*.log]
    {{- if not .Values.presets.logsCollection.includeCollectorLogs }}
    # vigil's own container: "<namespace>_<pod>_<uid>/vigil/<n>.log".
    exclude: [/var/log/pods/{{ .Release.Namespace }}_{{ include "vigil.fullname" . }}*_*/vigil/*.log]
    {{- end }}
    start_at: end
    include_file_path: true
    include_file_name: false
    {{- if .Values.presets.logsCollection.storeCheckpoints }}
    storage: file_storage
    {{- end }}
    retry_on_failure:
      enabled: true
    operators:
      # Docker's JSON, CRI-O's and containerd's line formats; the pod, namespace, uid and container
      # from the path; partial lines joined.
      - type: container
        id: container-parser
        max_log_size: {{ .Values.presets.logsCollection.maxRecombineLogSize }}
{{- end -}}

{{- define "vigil.applyHostMetrics" -}}
{{- $config := mergeOverwrite (include "vigil.hostMetricsConfig" . | fromYaml) .config -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "metrics" "key" "receivers" "item" "hostmetrics") -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.hostMetricsConfig" -}}
receivers:
  hostmetrics:
    root_path: /hostfs
    collection_interval: {{ .Values.presets.hostMetrics.collectionInterval }}
    scrapers:
      cpu: {}
      load: {}
      memory: {}
      disk: {}
      filesystem:
        exclude_mount_points:
          mount_points:
            - /dev/*
            - /proc/*
            - /sys/*
            - /run/k3s/containerd/*
            - /var/lib/docker/*
            - /var/lib/kubelet/*
            - /snap/*
          match_type: regexp
        exclude_fs_types:
          fs_types: [autofs, binfmt_misc, bpf, cgroup2, configfs, debugfs, devpts, devtmpfs, fusectl, hugetlbfs, iso9660, mqueue, nsfs, overlay, proc, procfs, pstore, rpc_pipefs, securityfs, selinuxfs, squashfs, sysfs, tracefs]
          match_type: strict
      network: {}
{{- end -}}

{{- define "vigil.applyKubeletMetrics" -}}
{{- $config := mergeOverwrite (include "vigil.kubeletMetricsConfig" . | fromYaml) .config -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "metrics" "key" "receivers" "item" "kubeletstats") -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.kubeletMetricsConfig" -}}
receivers:
  kubeletstats:
    collection_interval: {{ .Values.presets.kubeletMetrics.collectionInterval }}
    auth_type: serviceAccount
    endpoint: ${env:K8S_NODE_IP}:10250
    insecure_skip_verify: {{ .Values.presets.kubeletMetrics.insecureSkipVerify }}
{{- end -}}

{{- define "vigil.applyClusterMetrics" -}}
{{- $config := mergeOverwrite (include "vigil.clusterMetricsConfig" . | fromYaml) .config -}}
{{- $_ := set $config.service "extensions" (append (default (list) $config.service.extensions) "k8s_leader_elector/k8s_cluster" | uniq) -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "metrics" "key" "receivers" "item" "k8s_cluster") -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.clusterMetricsConfig" -}}
extensions:
  k8s_leader_elector/k8s_cluster:
    auth_type: serviceAccount
    lease_name: {{ printf "%s-k8s-cluster" (include "vigil.fullname" .) | trunc 63 }}
    lease_namespace: ${env:K8S_NAMESPACE}
receivers:
  k8s_cluster:
    auth_type: serviceAccount
    collection_interval: {{ .Values.presets.clusterMetrics.collectionInterval }}
    node_conditions_to_report: {{ toJson .Values.presets.clusterMetrics.nodeConditionsToReport }}
    allocatable_types_to_report: {{ toJson .Values.presets.clusterMetrics.allocatableTypesToReport }}
    k8s_leader_elector: k8s_leader_elector/k8s_cluster
{{- end -}}

{{- define "vigil.applyKubernetesAttributes" -}}
{{- $config := mergeOverwrite (include "vigil.kubernetesAttributesConfig" . | fromYaml) .config -}}
{{- range $p := list "traces" "metrics" "logs" -}}
{{- include "vigil.insertProcessor" (dict "config" $config "pipeline" $p "item" "k8sattributes") -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.kubernetesAttributesConfig" -}}
processors:
  k8sattributes:
    filter:
      node_from_env_var: K8S_NODE_NAME
    passthrough: false
    pod_association:
      - sources:
          - from: resource_attribute
            name: k8s.pod.ip
      - sources:
          - from: resource_attribute
            name: k8s.pod.uid
      - sources:
          - from: connection
    extract:
      metadata:
        - k8s.namespace.name
        - k8s.pod.name
        - k8s.pod.uid
        - k8s.node.name
        - k8s.pod.start_time
        - k8s.deployment.name
        - k8s.replicaset.name
        - k8s.daemonset.name
        - k8s.statefulset.name
        - k8s.cronjob.name
        - k8s.job.name
        - container.image.name
        - container.image.tag
      {{- if .Values.presets.kubernetesAttributes.extractAllPodLabels }}
      labels:
        - tag_name: $$1
          key_regex: (.*)
          from: pod
      {{- end }}
      {{- if .Values.presets.kubernetesAttributes.extractAllPodAnnotations }}
      annotations:
        - tag_name: $$1
          key_regex: (.*)
          from: pod
      {{- end }}
{{- end -}}

{{- define "vigil.applyAnnotationDiscovery" -}}
{{- $config := mergeOverwrite (include "vigil.annotationDiscoveryConfig" . | fromYaml) .config -}}
{{- $_ := set $config.service "extensions" (append (without $config.service.extensions "k8s_observer") "k8s_observer" | uniq) -}}
{{- if .Values.presets.annotationDiscovery.logs.enabled -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "logs" "key" "receivers" "item" "receiver_creator/logs") -}}
{{- end -}}
{{- if .Values.presets.annotationDiscovery.metrics.enabled -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "metrics" "key" "receivers" "item" "receiver_creator/metrics") -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.annotationDiscoveryConfig" -}}
extensions:
  k8s_observer:
    auth_type: serviceAccount
    node: ${env:K8S_NODE_NAME}
    observe_pods: true
receivers:
  {{- if .Values.presets.annotationDiscovery.logs.enabled }}
  receiver_creator/logs:
    watch_observers: [k8s_observer]
    discovery:
      enabled: true
      default_annotations:
        io.opentelemetry.discovery.logs/enabled: "true"
  {{- end }}
  {{- if .Values.presets.annotationDiscovery.metrics.enabled }}
  receiver_creator/metrics:
    watch_observers: [k8s_observer]
    discovery:
      enabled: true
  {{- end }}
{{- end -}}

{{/*
Detection: spans, metrics and (pattern-tagged) logs feed the anomalydetection connector; its
vigil.anomaly events and the logs go on through logs/out, where correlation groups the events into
vigil.incident records and dedup collapses repeats, and leave with the telemetry.
*/}}
{{- define "vigil.applyDetection" -}}
{{- $config := mergeOverwrite (include "vigil.detectionConfig" . | fromYaml) .config -}}
{{- $pipes := $config.service.pipelines -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "traces" "key" "exporters" "item" "anomalydetection") -}}
{{- include "vigil.appendTo" (dict "config" $config "pipeline" "metrics" "key" "exporters" "item" "anomalydetection") -}}
{{- if $pipes.logs -}}
{{- /* logs: everything up to logpattern, then to the detector and on to logs/out. */ -}}
{{- $logs := $pipes.logs -}}
{{- $before := list -}}
{{- $after := list -}}
{{- range $logs.processors -}}
{{- if or (eq . "batch") (eq . "dedup") -}}
{{- $after = append $after . -}}
{{- else -}}
{{- $before = append $before . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $logs "processors" (append (without $before "logpattern") "logpattern") -}}
{{- $out := dict "receivers" (list "forward/logs" "anomalydetection") "processors" (concat (list "correlation" "dedup") (without $after "dedup")) "exporters" $logs.exporters -}}
{{- $_ := set $logs "exporters" (list "anomalydetection" "forward/logs") -}}
{{- $_ := set $pipes "logs/out" (mergeOverwrite $out (default (dict) (index $pipes "logs/out"))) -}}
{{- end -}}
{{- if .Values.presets.detection.persistPatterns -}}
{{- $_ := set $config.service "extensions" (append (without $config.service.extensions "file_storage/patterns") "file_storage/patterns" | uniq) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vigil.detectionConfig" -}}
connectors:
  anomalydetection:
    interval: {{ .Values.presets.detection.interval }}
    include:
      match_type: regexp
      metric_names: {{ toJson .Values.presets.detection.metrics }}
  forward/logs: {}
processors:
  logpattern:
    {{- if .Values.presets.detection.persistPatterns }}
    storage: file_storage/patterns
    {{- end }}
  dedup:
    window: {{ .Values.presets.detection.dedupWindow }}
  correlation:
    window: 5m
    gap: 2m
{{- if .Values.presets.detection.persistPatterns }}
extensions:
  file_storage/patterns:
    directory: {{ .Values.stateDir }}/patterns
    create_directory: true
{{- end }}
{{- end -}}
