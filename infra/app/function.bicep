// The Flex Consumption plan and the Linux function app, with identity-based connections only.
// References:
// - Flex Consumption apps in Bicep (functionAppConfig, deployment storage with a user-assigned
//   identity, no FUNCTIONS_WORKER_RUNTIME app setting): https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to
//   and Azure-Samples/functions-quickstart-python-azd-eventgrid-blob (infra/app/processor.bicep).
// - Identity-based host storage (AzureWebJobsStorage__accountName, __credential, __clientId):
//   https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
// - A blob trigger's identity-based connection needs both <prefix>__blobServiceUri and
//   <prefix>__queueServiceUri (the extension writes poison messages to a queue of that account), and the
//   identity needs Storage Blob Data Owner and Storage Queue Data Contributor:
//   https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-blob-trigger#identity-based-connections
// - Application Insights with Entra auth (APPLICATIONINSIGHTS_AUTHENTICATION_STRING):
//   https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
// - OpenTelemetry from the host and the Python worker (host.json telemetryMode, PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY):
//   https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto?pivot=programming-language-python

param planName string
param appName string
param location string = resourceGroup().location
param tags object = {}

@description('Tag value azd uses to find the service this app hosts (azure.yaml services key).')
param serviceName string = 'api'

param identityId string
param identityClientId string

param storageAccountName string
param storageBlobEndpoint string
param storageQueueEndpoint string
param deploymentContainerName string

param applicationInsightsConnectionString string

param openAiEndpoint string
param openAiDeployment string
param openAiModel string

@description('Tokens per minute of the model deployment (its capacity x 1,000): the app paces its calls to it.')
param openAiTokensPerMinute int

@allowed([
  2048
  4096
])
@description('Memory of one instance in MB; CPU scales with it.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Most instances the app scales out to; with host.json maxDegreeOfParallelism it bounds the concurrent model calls (see README "Scale").')
param maximumInstanceCount int = 10

@minValue(1)
@maxValue(1000)
@description('Concurrent HTTP requests per instance. Each may decode an image of up to VISION_MAX_IMAGE_PIXELS.')
param httpPerInstanceConcurrency int = 8

@allowed([
  'off'
  'pipeline'
  'all'
])
param localFallback string = 'pipeline'

param inputContainerName string
param resultsContainerName string
param quarantineContainerName string
param schemasContainerName string
param cacheContainerName string
param cacheTableName string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: zone redundancy for Flex Consumption depends on the region; turn it on where offered
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_17: client certificates are not required; function keys authenticate callers
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero by design; always-ready instances are a cost choice
    // checkov:skip=CKV_AZURE_213: the platform health check is not used on Flex Consumption; GET /api/health serves probes
    // checkov:skip=CKV_AZURE_222: the HTTPS endpoint is the product; restrict it with access restrictions or a private endpoint where needed
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Every setting shared/config.py reads is either here or left to its documented default
      // (tests/test_infra.py checks it). No key, and no connection string with a secret, anywhere.
      appSettings: [
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'VISION_IMAGES_STORAGE__blobServiceUri'
          value: storageBlobEndpoint
        }
        {
          name: 'VISION_IMAGES_STORAGE__queueServiceUri'
          value: storageQueueEndpoint
        }
        {
          name: 'VISION_IMAGES_STORAGE__credential'
          value: 'managedidentity'
        }
        {
          name: 'VISION_IMAGES_STORAGE__clientId'
          value: identityClientId
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          // With host.json "telemetryMode": "OpenTelemetry", the Python worker configures the Azure Monitor
          // distro itself (keyless through the setting above) and runs each invocation under the host's trace
          // context; the host then leaves the worker's logs to it instead of sending them twice (shared/telemetry.py).
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        {
          name: 'AZURE_OPENAI_ENDPOINT'
          value: openAiEndpoint
        }
        {
          name: 'AZURE_OPENAI_DEPLOYMENT'
          value: openAiDeployment
        }
        {
          name: 'AZURE_OPENAI_MODEL'
          value: openAiModel
        }
        {
          name: 'VISION_TPM_LIMIT'
          value: string(openAiTokensPerMinute)
        }
        {
          // Each instance paces itself to its share of the quota: at most maximumInstanceCount share it.
          name: 'VISION_INSTANCES'
          value: string(maximumInstanceCount)
        }
        {
          name: 'VISION_PROVIDER'
          value: 'azure_openai'
        }
        {
          name: 'VISION_LOCAL_FALLBACK'
          value: localFallback
        }
        {
          name: 'VISION_BLOB_SOURCE'
          value: 'EventGrid'
        }
        {
          name: 'VISION_INPUT_CONTAINER'
          value: inputContainerName
        }
        {
          name: 'VISION_RESULTS_CONTAINER'
          value: resultsContainerName
        }
        {
          name: 'VISION_QUARANTINE_CONTAINER'
          value: quarantineContainerName
        }
        {
          name: 'VISION_SCHEMAS_CONTAINER'
          value: schemasContainerName
        }
        {
          name: 'VISION_CACHE_CONTAINER'
          value: cacheContainerName
        }
        {
          name: 'VISION_CACHE_TABLE'
          value: cacheTableName
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing with basic (user/password) credentials is off: azd and Core Tools deploy with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output defaultHostName string = app.properties.defaultHostName
