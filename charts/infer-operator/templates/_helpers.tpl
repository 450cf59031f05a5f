{{/* Chart name, overridable with nameOverride. */}}
{{- define "infer-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name (63 characters at most: some Kubernetes name fields are limited to that).
If the release name contains the chart name, the release name alone is used.
*/}}
{{- define "infer-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, as used by the chart label. */}}
{{- define "infer-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "infer-operator.labels" -}}
helm.sh/chart: {{ include "infer-operator.chart" . }}
{{ include "infer-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels. */}}
{{- define "infer-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infer-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the ServiceAccount to use. */}}
{{- define "infer-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infer-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the replicas run with kopf peering (active/standby). */}}
{{- define "infer-operator.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicas) 1) }}true{{- end }}
{{- end }}

{{/* The kopf peering name. */}}
{{- define "infer-operator.peeringName" -}}
{{- default (include "infer-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The operator's image reference. */}}
{{- define "infer-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The job label of the operator's series (PrometheusRule, dashboard default). */}}
{{- define "infer-operator.metricsJob" -}}
{{- default (printf "%s-metrics" (include "infer-operator.fullname" .)) .Values.metrics.prometheusRule.job }}
{{- end }}

{{/*
Where this chart is published: hack/release.sh pushes it to oci://ghcr.io/OWNER/charts next to the
image ghcr.io/OWNER/infer-operator. Another image repository: the placeholder CHART.
*/}}
{{- define "infer-operator.chartRef" -}}
{{- $ref := regexReplaceAll "^ghcr\\.io/([^/]+)/infer-operator$" .Values.image.repository "oci://ghcr.io/${1}/charts/infer-operator" }}
{{- if hasPrefix "oci://" $ref }}{{ $ref }}{{ else }}CHART{{ end }}
{{- end }}
