{{/* The chart's name, or nameOverride. */}}
{{- define "accord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, or release-chart (the release alone when it contains the chart's name). */}}
{{- define "accord.fullname" -}}
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

{{- define "accord.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accord.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "accord.labels" -}}
helm.sh/chart: {{ include "accord.chart" . }}
{{ include "accord.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "accord.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "accord.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL. */}}
{{- define "accord.databaseSecretName" -}}
{{- default (printf "%s-database" (include "accord.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* The Secret holding the API token (under the key `token`). */}}
{{- define "accord.apiTokenSecretName" -}}
{{- default (printf "%s-api-token" (include "accord.fullname" .)) .Values.apiToken.existingSecret }}
{{- end }}

{{/* Where the SQLite file lives: the data volume's mount path. */}}
{{- define "accord.dataDir" -}}
/var/lib/accord
{{- end }}

{{/*
The database's kind, sqlite or postgres. From `database.url` when the chart
makes the Secret (and `database.kind`, if given, must agree); from
`database.kind` alone with an existingSecret, whose URL the chart cannot read.
Fails on a database that cannot work: an unknown URL scheme, a SQLite file
outside the data volume, or SQLite with more than one replica.
*/}}
{{- define "accord.databaseKind" -}}
{{- $db := .Values.database }}
{{- $kind := $db.kind }}
{{- if $db.existingSecret }}
{{- if not $kind }}
{{- fail (printf "database.kind: set it to sqlite or postgres; the chart cannot read the URL in database.existingSecret %q" $db.existingSecret) }}
{{- end }}
{{- else }}
{{- $fromUrl := "" }}
{{- if hasPrefix "sqlite:" $db.url }}
{{- $fromUrl = "sqlite" }}
{{- $path := $db.url | trimPrefix "sqlite:" | trimPrefix "//" }}
{{- if not (hasPrefix (printf "%s/" (include "accord.dataDir" .)) $path) }}
{{- fail (printf "database.url: the SQLite file must be under %s, the chart's data volume (the root file system is read-only), e.g. sqlite://%s/accord.db" (include "accord.dataDir" .) (include "accord.dataDir" .)) }}
{{- end }}
{{- else if or (hasPrefix "postgres://" $db.url) (hasPrefix "postgresql://" $db.url) }}
{{- $fromUrl = "postgres" }}
{{- else }}
{{- fail "database.url: must start with sqlite: or postgres:// (or give database.existingSecret and database.kind)" }}
{{- end }}
{{- if and $kind (ne $kind $fromUrl) }}
{{- fail (printf "database.kind is %s but database.url is a %s URL" $kind $fromUrl) }}
{{- end }}
{{- $kind = $fromUrl }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (ne $kind "postgres") }}
{{- fail (printf "replicas: %d needs PostgreSQL: with SQLite each pod would have its own database. Set replicas: 1, or give a postgres:// database.url (or database.existingSecret with database.kind: postgres)" (int .Values.replicas)) }}
{{- end }}
{{- $kind }}
{{- end }}

{{/* "true" when the pods elect a leader through a Lease: the Kubernetes source needs one, and so do several replicas. */}}
{{- define "accord.leaderElection" -}}
{{- if or .Values.kubernetes.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/* The SQLite data volume's PVC name, when the chart mounts one. */}}
{{- define "accord.claimName" -}}
{{- default (printf "%s-data" (include "accord.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}
