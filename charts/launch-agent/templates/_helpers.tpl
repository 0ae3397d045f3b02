{{/*
Names. Every name is at most 63 characters and ends in an alphanumeric character.
*/}}
{{- define "launch-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "launch-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A name derived from the full name with a suffix; the prefix is cut so the suffix survives. */}}
{{- define "launch-agent.suffixed" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $max := sub 62 (len $suffix) | int -}}
{{- printf "%s-%s" (include "launch-agent.fullname" $root | trunc $max | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "launch-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The agent's namespace: `namespace` when set, else the release namespace. */}}
{{- define "launch-agent.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{/* Target namespaces, comma separated: the agent's own first, then the additional ones, without duplicates. */}}
{{- define "launch-agent.targetNamespaces" -}}
{{- $all := prepend (.Values.additionalTargetNamespaces | default list) (include "launch-agent.namespace" .) -}}
{{- join "," (uniq $all) -}}
{{- end -}}

{{/*
Labels. The selector uses name + instance only, so user labels never enter it.
*/}}
{{- define "launch-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "launch-agent.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
{{- end -}}

{{- define "launch-agent.standardLabels" -}}
{{- $std := dict
  "app.kubernetes.io/name" (include "launch-agent.name" .)
  "app.kubernetes.io/instance" (.Release.Name | trunc 63 | trimSuffix "-")
  "app.kubernetes.io/version" (include "launch-agent.version" . | trunc 63 | trimSuffix "-" | trimSuffix ".")
  "app.kubernetes.io/managed-by" .Release.Service
  "app.kubernetes.io/component" "agent"
  "app.kubernetes.io/part-of" "launch-agent"
  "helm.sh/chart" (include "launch-agent.chart" .) -}}
{{- toJson $std -}}
{{- end -}}

{{/* Labels of every object: the standard ones, then commonLabels. */}}
{{- define "launch-agent.labels" -}}
{{- $std := fromJson (include "launch-agent.standardLabels" .) -}}
{{- include "launch-agent.stringMap" (merge $std (.Values.commonLabels | default dict)) | trim -}}
{{- end -}}

{{/* Render a map of strings with every key and value quoted; null values are dropped. */}}
{{- define "launch-agent.stringMap" -}}
{{- range $k, $v := . }}
{{- if not (kindIs "invalid" $v) }}
{{ $k | quote }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Image. A reference to our agent without tag or digest gets the chart's appVersion as tag;
other references are used as given.
*/}}
{{- define "launch-agent.image" -}}
{{- $image := .Values.agent.image -}}
{{- $last := last (splitList "/" $image) -}}
{{- if or (contains "@" $image) (contains ":" $last) (include "launch-agent.official" .) -}}
{{- $image -}}
{{- else -}}
{{- printf "%s:%s" $image .Chart.AppVersion -}}
{{- end -}}
{{- end -}}

{{/* The version the agent runs: the image's tag (the chart's appVersion when the chart adds it), else "unknown". */}}
{{- define "launch-agent.version" -}}
{{- $image := include "launch-agent.image" . -}}
{{- $last := last (splitList "/" (regexReplaceAll "@.*$" $image "")) -}}
{{- if contains ":" $last -}}
{{- last (splitList ":" $last) -}}
{{- else -}}
unknown
{{- end -}}
{{- end -}}

{{/* The image the chart defaults to; until it is published, NOTES says how to build and push it. */}}
{{- define "launch-agent.defaultImage" -}}
ghcr.io/launch-agent/agent
{{- end -}}

{{/* "true" when the default image runs and this chart was not released together with it. */}}
{{- define "launch-agent.unpublishedImage" -}}
{{- $published := index (.Chart.Annotations | default (dict)) "launch-agent.dev/image-published" -}}
{{- if and (eq .Values.agent.image (include "launch-agent.defaultImage" .)) (ne (toString $published) "true") -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the image is the official W&B agent. */}}
{{- define "launch-agent.official" -}}
{{- $kind := .Values.agent.imageKind | default "auto" -}}
{{- if eq $kind "official" -}}
true
{{- else if eq $kind "auto" -}}
{{- $repo := regexReplaceAll "[:@].*$" (last (splitList "/" .Values.agent.image)) "" -}}
{{- $path := splitList "/" .Values.agent.image -}}
{{- $prefix := initial $path | join "/" -}}
{{- if and (has $repo (list "launch-agent" "launch-agent-dev")) (has $prefix (list "wandb" "docker.io/wandb" "index.docker.io/wandb" "registry-1.docker.io/wandb")) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the health endpoint is probed (our agent with probes on). */}}
{{- define "launch-agent.probed" -}}
{{- if and .Values.agent.probes.enabled (not (include "launch-agent.official" .)) -}}
true
{{- end -}}
{{- end -}}

{{/*
Object names. Per release, so two releases in one namespace never collide.
*/}}
{{/* The official chart's name, which workload-identity bindings (GKE, EKS IRSA, Azure) refer to. */}}
{{- define "launch-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.name -}}
{{- .Values.serviceAccount.name -}}
{{- else -}}
{{- printf "wandb-launch-serviceaccount-%s" .Release.Name -}}
{{- end -}}
{{- end -}}

{{- define "launch-agent.configMapName" -}}
{{- include "launch-agent.suffixed" (list . "config") -}}
{{- end -}}

{{/* The API-key Secret: the name the official agent derives from WANDB_RELEASE_NAME, unless an existing one is named. */}}
{{- define "launch-agent.apiKeySecretName" -}}
{{- if .Values.agent.existingApiKeySecret -}}
{{- .Values.agent.existingApiKeySecret -}}
{{- else -}}
{{- /* Uncut, as the official agent derives it (a Secret name may have 253 characters). */ -}}
{{- printf "wandb-api-key-%s" .Release.Name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the chart renders the API-key Secrets. */}}
{{- define "launch-agent.rendersApiKey" -}}
{{- if not (or .Values.agent.useExternalWandbSecret .Values.agent.existingApiKeySecret) -}}
true
{{- end -}}
{{- end -}}

{{- define "launch-agent.gitCredsSecretName" -}}
{{- if .Values.existingGitCredsSecret -}}
{{- .Values.existingGitCredsSecret -}}
{{- else -}}
{{- include "launch-agent.suffixed" (list . "git-creds") -}}
{{- end -}}
{{- end -}}

{{- define "launch-agent.secretEnvName" -}}
{{- include "launch-agent.suffixed" (list . "secret-env") -}}
{{- end -}}

{{/* The official agent's kaniko jobs read the fixed name azure-storage-access-key. */}}
{{- define "launch-agent.azureSecretName" -}}
{{- if .Values.existingAzureStorageSecret -}}
{{- .Values.existingAzureStorageSecret -}}
{{- else if include "launch-agent.official" . -}}
azure-storage-access-key
{{- else -}}
{{- include "launch-agent.suffixed" (list . "azure-storage") -}}
{{- end -}}
{{- end -}}

{{- define "launch-agent.sshConfigName" -}}
{{- include "launch-agent.suffixed" (list . "ssh-config") -}}
{{- end -}}

{{- define "launch-agent.leaseName" -}}
{{- include "launch-agent.suffixed" (list . "leader") -}}
{{- end -}}

{{/*
Additional env vars and secret env vars, normalised to a list of maps.
A map of name -> value is accepted as well as the official list of {name, value}.
*/}}
{{- define "launch-agent.envList" -}}
{{- $out := list -}}
{{- if kindIs "map" . -}}
{{- range $k, $v := . -}}
{{- $out = append $out (dict "name" $k "value" $v) -}}
{{- end -}}
{{- else -}}
{{- $out = . | default list -}}
{{- end -}}
{{- toJson (dict "items" $out) -}}
{{- end -}}

{{/* Inline secret env vars (those with `value`), the ones the chart stores in its Secret. */}}
{{- define "launch-agent.inlineSecretEnv" -}}
{{- $out := list -}}
{{- range (fromJson (include "launch-agent.envList" .Values.additionalSecretEnvVars)).items -}}
{{- if not .secretKeyRef -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "items" $out) -}}
{{- end -}}

{{/* The parsed launchConfig; fails with a clear message when it is missing or not a YAML mapping with queues. */}}
{{- define "launch-agent.launchConfig" -}}
{{- $raw := .Values.launchConfig | default "" | trim -}}
{{- if not $raw -}}
{{- fail "launchConfig: required; set it to the contents of your agent config (launch-config.yaml), a YAML mapping with a `queues` list" -}}
{{- end -}}
{{- $cfg := fromYaml $raw -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "launchConfig: not a YAML mapping (%s)" $cfg.Error) -}}
{{- end -}}
{{- $queues := get $cfg "queues" -}}
{{- if not (kindIs "slice" $queues) -}}
{{- fail "launchConfig: `queues` must be a non-empty list of queue names" -}}
{{- end -}}
{{- if not $queues -}}
{{- fail "launchConfig: `queues` must be a non-empty list of queue names" -}}
{{- end -}}
{{- range $queues -}}
{{- if or (not (kindIs "string" .)) (contains "<" (toString .)) (contains ">" (toString .)) -}}
{{- fail (printf "launchConfig: queue %v is not a queue name (replace the placeholder with your queue's name)" .) -}}
{{- end -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/*
Checks of value combinations that the schema cannot express. Included by the Deployment.
*/}}
{{- define "launch-agent.validate" -}}
{{- if and .Values.agent.apiKey .Values.agent.useExternalWandbSecret -}}
{{- fail "agent.apiKey is set together with agent.useExternalWandbSecret=true; set one of them" -}}
{{- end -}}
{{- if and .Values.agent.apiKey .Values.agent.existingApiKeySecret -}}
{{- fail "agent.apiKey is set together with agent.existingApiKeySecret; set one of them" -}}
{{- end -}}
{{- if and (include "launch-agent.rendersApiKey" .) (not .Values.agent.apiKey) -}}
{{- fail "agent.apiKey: required; or set agent.existingApiKeySecret (or agent.useExternalWandbSecret=true) to use a Secret you create" -}}
{{- end -}}
{{- if and .Values.azureStorageAccessKey .Values.existingAzureStorageSecret -}}
{{- fail "azureStorageAccessKey is set together with existingAzureStorageSecret; set one of them" -}}
{{- end -}}
{{- if and .Values.existingAzureStorageSecret (include "launch-agent.official" .) (ne .Values.existingAzureStorageSecret "azure-storage-access-key") -}}
{{- fail (printf "existingAzureStorageSecret: the official image's kaniko jobs read the Secret azure-storage-access-key only, not %q" .Values.existingAzureStorageSecret) -}}
{{- end -}}
{{- if and .Values.gitCreds .Values.existingGitCredsSecret -}}
{{- fail "gitCreds is set together with existingGitCredsSecret; set one of them" -}}
{{- end -}}
{{- if and (gt (int .Values.replicas) 1) (include "launch-agent.official" .) -}}
{{- fail "replicas > 1 needs leader election, which the official wandb/launch-agent image does not have; use replicas: 1 with that image" -}}
{{- end -}}
{{- if gt (int .Values.replicas) 1 -}}
{{- $min := .Values.agent.minAvailable -}}
{{- if and (kindIs "string" $min) (hasSuffix "%" $min) -}}
{{- /* Kubernetes rounds a minAvailable percentage up. */ -}}
{{- $pods := ceil (divf (mulf (float64 (trimSuffix "%" $min)) (int .Values.replicas)) 100) | int -}}
{{- if ge $pods (int .Values.replicas) -}}
{{- fail (printf "agent.minAvailable: %s of %d replicas rounds up to %d, so no agent pod could ever be evicted and node drains would block; use a smaller value" $min (int .Values.replicas) $pods) -}}
{{- end -}}
{{- end -}}
{{- if and (not (kindIs "string" $min)) (ge (int $min) (int .Values.replicas)) -}}
{{- fail (printf "agent.minAvailable (%v) must be lower than replicas (%v), or no agent pod could ever be evicted" $min .Values.replicas) -}}
{{- end -}}
{{- end -}}
{{- $cabundle := .Values.customCABundle.configMap -}}
{{- if and (or $cabundle.name $cabundle.key) (not (and $cabundle.name $cabundle.key)) -}}
{{- fail "customCABundle.configMap: set both name and key" -}}
{{- end -}}
{{- range (fromJson (include "launch-agent.envList" .Values.additionalSecretEnvVars)).items -}}
{{- if and (not .secretKeyRef) (kindIs "invalid" .value) -}}
{{- fail (printf "additionalSecretEnvVars: %s needs either value or secretKeyRef" .name) -}}
{{- end -}}
{{- end -}}
{{- range $ns := .Values.additionalTargetNamespaces | default list -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $ns) -}}
{{- fail (printf "additionalTargetNamespaces: %q is not a valid namespace name" $ns) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount the agent runs as" -}}
{{- end -}}
{{- $targets := splitList "," (include "launch-agent.targetNamespaces" .) -}}
{{- range $ns, $_ := .Values.rbac.namespaces | default dict -}}
{{- if not (has $ns $targets) -}}
{{- fail (printf "rbac.namespaces.%s: not a target namespace; add it to additionalTargetNamespaces (targets: %s)" $ns (join ", " $targets)) -}}
{{- end -}}
{{- end -}}
{{- $_ := include "launch-agent.launchConfig" . -}}
{{- include "launch-agent.validateBuilder" . -}}
{{- end -}}

{{/*
A kaniko builder that cannot build: no context store and no kanikoPvcName, a store whose scheme
does not match environment.type, a registry URI that is not of its registry.type.
*/}}
{{- define "launch-agent.validateBuilder" -}}
{{- $cfg := fromJson (include "launch-agent.launchConfig" .) -}}
{{- $builder := get $cfg "builder" | default dict -}}
{{- $env := get $cfg "environment" | default dict -}}
{{- $registry := get $cfg "registry" | default dict -}}
{{- if and (kindIs "map" $builder) (eq (toString (get $builder "type")) "kaniko") -}}
{{- $store := toString (get $builder "build-context-store" | default "") -}}
{{- $cloud := "" -}}
{{- if kindIs "map" $env -}}{{- $cloud = toString (get $env "type" | default "") -}}{{- end -}}
{{- if and (not $store) (not .Values.kanikoPvcName) -}}
{{- fail "launchConfig: builder.build-context-store: a kaniko builder needs a build context store (s3://bucket/path, gs://bucket/path or https://<account>.blob.core.windows.net/<container>/path) or the value kanikoPvcName" -}}
{{- end -}}
{{- if and $store (not .Values.kanikoPvcName) -}}
{{- $want := "" -}}
{{- if hasPrefix "s3://" $store -}}{{- $want = "aws" -}}
{{- else if hasPrefix "gs://" $store -}}{{- $want = "gcp" -}}
{{- else if regexMatch "^https://[^./]+\\.blob\\.core\\.windows\\.net/[^/]+" $store -}}{{- $want = "azure" -}}
{{- else -}}
{{- fail (printf "launchConfig: builder.build-context-store: %q is not an s3://, gs:// or https://<account>.blob.core.windows.net/<container> URI" $store) -}}
{{- end -}}
{{- if ne $want $cloud -}}
{{- fail (printf "launchConfig: builder.build-context-store: %q needs environment.type %s, not %s" $store $want ($cloud | default "none")) -}}
{{- end -}}
{{- end -}}
{{- if kindIs "map" $registry -}}
{{- $type := toString (get $registry "type" | default "") -}}
{{- $uri := toString (get $registry "uri" | default "") -}}
{{- $patterns := dict "ecr" "^(https://)?[\\w-]+\\.dkr\\.ecr\\.[\\w-]+\\.amazonaws\\.com/" "gcr" "^(https://)?[\\w-]+-docker\\.pkg\\.dev/" "acr" "^(https://)?\\w+\\.azurecr\\.io/" -}}
{{- if and $type $uri (hasKey $patterns $type) (not (regexMatch (get $patterns $type) $uri)) -}}
{{- fail (printf "launchConfig: registry.uri: %q is not a %s URI, which registry.type %s needs" $uri $type $type) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The launchConfig's builder type, or "". */}}
{{- define "launch-agent.builderType" -}}
{{- $cfg := fromJson (include "launch-agent.launchConfig" .) -}}
{{- $builder := get $cfg "builder" | default dict -}}
{{- if kindIs "map" $builder -}}
{{- get $builder "type" | default "" -}}
{{- end -}}
{{- end -}}
