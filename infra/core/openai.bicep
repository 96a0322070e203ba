// Azure OpenAI account (keys disabled: Entra ID only) and one vision-capable model deployment.

param name string
param location string = resourceGroup().location
param tags object = {}

@description('Subdomain of the endpoint, https://<customSubDomainName>.openai.azure.com; Entra ID auth needs one.')
param customSubDomainName string = name

@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network access to the data plane. Disabled needs a private endpoint and VNet integration.')
param publicNetworkAccess string = 'Enabled'

@description('Deployment name the app sends requests to (AZURE_OPENAI_DEPLOYMENT).')
param deploymentName string = 'gpt-4o'

@description('Model name (AZURE_OPENAI_MODEL; also used for token and cost estimates).')
param modelName string = 'gpt-4o'

param modelVersion string = '2024-11-20'

@description('Deployment SKU: GlobalStandard, DataZoneStandard, Standard...')
param deploymentSku string = 'GlobalStandard'

@description('Capacity in units of 1,000 tokens per minute (TPM); requests per minute are 6 per 1,000 TPM.')
param deploymentCapacity int = 30

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    // checkov:skip=CKV_AZURE_238: the account calls no other service, so it needs no identity of its own
    // checkov:skip=CKV_AZURE_134: public access is the parameter publicNetworkAccess (Disabled needs a private endpoint); keys are disabled either way
    customSubDomainName: customSubDomainName
    disableLocalAuth: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
    }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSku
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
output modelName string = modelName
