{{/*
Names, labels, images, security contexts and connection strings, in one place.
*/}}

{{- define "kubetrader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: <release>-kubetrader, or the release name when it holds the chart name. */}}
{{- define "kubetrader.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. Call with (list $ "component"). */}}
{{- define "kubetrader.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "kubetrader.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetrader.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component. Call with (list $ "component"). */}}
{{- define "kubetrader.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "kubetrader.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of a component. part-of=kubetrader is what the NetworkPolicies admit
(the operator puts it on the Jobs it creates, too). Call with (list $ "component"). */}}
{{- define "kubetrader.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "kubetrader.chart" $root }}
{{ include "kubetrader.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: kubetrader
{{- end }}

{{/* A kubetrader image: <registry>/<repository>:<tag>. Call with (list $ "engine"). */}}
{{- define "kubetrader.image" -}}
{{- $root := index . 0 }}
{{- $images := $root.Values.images }}
{{- printf "%s/%s:%s" $images.registry (index $images (index . 1)) $images.tag }}
{{- end }}

{{- define "kubetrader.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod securityContext meeting Pod Security "restricted". Call with a uid. */}}
{{- define "kubetrader.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container securityContext meeting Pod Security "restricted", read-only root filesystem. */}}
{{- define "kubetrader.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The namespaces the operator watches (a list; the release namespace when none are given). */}}
{{- define "kubetrader.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- toJson (uniq .Values.operator.watchNamespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "kubetrader.engineServiceAccount" -}}
{{- include "kubetrader.componentName" (list . "engine") }}
{{- end }}

{{- define "kubetrader.dataClaim" -}}
{{- default (include "kubetrader.componentName" (list . "data")) .Values.data.existingClaim }}
{{- end }}

{{- define "kubetrader.apiTokenSecret" -}}
{{- default (include "kubetrader.componentName" (list . "api-token")) .Values.api.existingTokenSecret }}
{{- end }}

{{/* Redis: the bundled server's URL, or the external one (required when the bundled one is off). */}}
{{- define "kubetrader.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s.%s.svc:6379/0" (include "kubetrader.componentName" (list . "redis")) .Release.Namespace }}
{{- else }}
{{- required "redis.external.url is required when redis.enabled is false" .Values.redis.external.url }}
{{- end }}
{{- end }}

{{/* PostgreSQL: host, port, user, password Secret and key. */}}
{{- define "kubetrader.postgresHost" -}}
{{- if .Values.postgresql.enabled }}
{{- printf "%s.%s.svc" (include "kubetrader.componentName" (list . "postgresql")) .Release.Namespace }}
{{- else }}
{{- required "postgresql.external.host is required when postgresql.enabled is false" .Values.postgresql.external.host }}
{{- end }}
{{- end }}

{{- define "kubetrader.postgresPort" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.postgresql.external.port }}{{ end }}
{{- end }}

{{- define "kubetrader.postgresUser" -}}
{{- if .Values.postgresql.enabled }}
{{- .Values.postgresql.username }}
{{- else }}
{{- required "postgresql.external.username is required when postgresql.enabled is false" .Values.postgresql.external.username }}
{{- end }}
{{- end }}

{{- define "kubetrader.postgresSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- include "kubetrader.componentName" (list . "postgresql") }}
{{- else }}
{{- required "postgresql.external.existingSecret is required when postgresql.enabled is false" .Values.postgresql.external.existingSecret }}
{{- end }}
{{- end }}

{{- define "kubetrader.postgresPasswordKey" -}}
{{- if .Values.postgresql.enabled }}password{{ else }}{{ .Values.postgresql.external.passwordKey }}{{ end }}
{{- end }}

{{/* Is a PostgreSQL server configured at all (bundled or external)? "true" or "". */}}
{{- define "kubetrader.postgresConfigured" -}}
{{- if or .Values.postgresql.enabled .Values.postgresql.external.host }}true{{ end }}
{{- end }}

{{/* The env entry POSTGRES_PASSWORD from the Secret; URLs below refer to it as $(POSTGRES_PASSWORD). */}}
{{- define "kubetrader.postgresPasswordEnv" -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.postgresSecret" . }}
      key: {{ include "kubetrader.postgresPasswordKey" . }}
{{- end }}

{{/* SQLAlchemy URL of one database; needs POSTGRES_PASSWORD earlier in the env list. Call with (list $ "mlflow"). */}}
{{- define "kubetrader.databaseUrl" -}}
{{- $root := index . 0 }}
{{- $database := index $root.Values.postgresql.databases (index . 1) }}
{{- printf "postgresql+psycopg2://%s:$(POSTGRES_PASSWORD)@%s:%s/%s" (include "kubetrader.postgresUser" $root) (include "kubetrader.postgresHost" $root) (include "kubetrader.postgresPort" $root) $database }}
{{- end }}

{{/* MLflow tracking URI: the bundled server's Service, or the external one; empty when there is none. */}}
{{- define "kubetrader.mlflowTrackingUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:5000" (include "kubetrader.componentName" (list . "mlflow")) .Release.Namespace }}
{{- else }}
{{- .Values.mlflow.external.trackingUri }}
{{- end }}
{{- end }}

{{/* Where a person opens MLflow's UI (the kind NodePort, or the external server). */}}
{{- define "kubetrader.mlflowUiUrl" -}}
{{- if .Values.mlflow.enabled }}
{{- if eq .Values.mlflow.service.type "NodePort" }}
{{- printf "http://localhost:%v" .Values.mlflow.service.nodePort }}
{{- else }}
{{- include "kubetrader.mlflowTrackingUri" . }}
{{- end }}
{{- else }}
{{- default .Values.mlflow.external.trackingUri .Values.mlflow.external.uiUrl }}
{{- end }}
{{- end }}

{{/* The in-cluster URL of the API. */}}
{{- define "kubetrader.apiUrl" -}}
{{- printf "http://%s.%s.svc:8000" (include "kubetrader.componentName" (list . "api")) .Release.Namespace }}
{{- end }}

{{/* Look up a key of an existing Secret (kept across upgrades), or generate a new random value.
Call with (list $ "secret-name" "key" length). */}}
{{- define "kubetrader.keptRandom" -}}
{{- $root := index . 0 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) }}
{{- if and $existing (hasKey ($existing.data | default dict) (index . 2)) }}
{{- index $existing.data (index . 2) | b64dec }}
{{- else }}
{{- randAlphaNum (index . 3) }}
{{- end }}
{{- end }}

{{/* ---- NetworkPolicy peers (templates/networkpolicies.yaml, and the operator's live policies) ---- */}}

{{/* Labels the operator puts on every pod it creates (kubetrader_operator.labels: MANAGED_BY, PART_OF). */}}
{{- define "kubetrader.operatorChildLabels" -}}
app.kubernetes.io/managed-by: kubetrader-operator
app.kubernetes.io/part-of: kubetrader
{{- end }}

{{/* A component's pods in the release namespace, selected by namespace NAME (a label any other
namespace cannot carry) and the component's selector labels. Call with (list $ "component"). */}}
{{- define "kubetrader.componentPeer" -}}
{{- $root := index . 0 -}}
namespaceSelector:
  matchLabels:
    kubernetes.io/metadata.name: {{ $root.Release.Namespace }}
podSelector:
  matchLabels:
    {{- include "kubetrader.selectorLabels" . | nindent 4 }}
{{- end }}

{{/* The same peer as JSON for the operator's live settings: {"namespace": ..., "labels": {...}}. */}}
{{- define "kubetrader.componentPeerJson" -}}
{{- $root := index . 0 -}}
{{- toJson (dict "namespace" $root.Release.Namespace "labels" (include "kubetrader.selectorLabels" . | fromYaml)) }}
{{- end }}

{{/* The pods the operator creates (Backtest and study Jobs) in the namespaces it watches. With
watchAllNamespaces that is any namespace: there only the labels tell them apart. */}}
{{- define "kubetrader.operatorChildPeer" -}}
{{- if .Values.operator.watchAllNamespaces -}}
namespaceSelector: {}
{{- else -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: In
      values: {{ include "kubetrader.watchNamespaces" . }}
{{- end }}
podSelector:
  matchLabels:
    {{- include "kubetrader.operatorChildLabels" . | nindent 4 }}
{{- end }}
