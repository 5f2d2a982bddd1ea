{{/*
Names, labels and image references shared by every template.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "scribe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters because some Kubernetes name fields are
limited to that (DNS label).
*/}}
{{- define "scribe.fullname" -}}
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

{{/* Chart name and version, as used by the helm.sh/chart label. */}}
{{- define "scribe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels on every object of the release. */}}
{{- define "scribe.labels" -}}
helm.sh/chart: {{ include "scribe.chart" . }}
{{ include "scribe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scribe
{{- end }}

{{/*
Selector labels: only labels that never change across upgrades, because a Deployment's selector
is immutable.
*/}}
{{- define "scribe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scribe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Name of the controller's ServiceAccount. */}}
{{- define "scribe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scribe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference from an image block {repository, tag, digest} and the chart; the tag defaults
to appVersion so chart and binaries move together. A digest, when given, pins the image.
Usage: include "scribe.image" (dict "image" .Values.image "chart" .Chart)
*/}}
{{- define "scribe.image" -}}
{{- $tag := default .chart.AppVersion .image.tag | toString }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The controller image. */}}
{{- define "scribe.controllerImage" -}}
{{- include "scribe.image" (dict "image" .Values.image "chart" .Chart) }}
{{- end }}

{{/* The mover image, handed to the controller for the Jobs it creates. */}}
{{- define "scribe.moverImage" -}}
{{- include "scribe.image" (dict "image" .Values.mover.image "chart" .Chart) }}
{{- end }}
