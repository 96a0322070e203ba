// Event Grid subscription delivering the input container's finished blobs to the function's
// blob-extension webhook. Deployed after the code (scripts/subscribe-blob-events, azd's postdeploy
// hook), since the webhook URL carries the blobs_extension system key that exists only then.
// Reference: https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger

param systemTopicName string
param functionAppHostName string

@description('Function name as the host knows it: Host.Functions.<python function name>.')
param functionName string = 'Host.Functions.on_image_uploaded'

@secure()
@description('The function app\'s blobs_extension system key (az functionapp keys list).')
param blobsExtensionKey string

param inputContainerName string
param storageAccountId string
param deadLetterContainerName string

@description('Identity of the system topic, used to write dead-lettered events.')
param identityId string

@description('Deliveries of one event before it is dead-lettered.')
param maxDeliveryAttempts int = 30

@description('Minutes an undelivered event is retried before it is dead-lettered.')
param eventTimeToLiveInMinutes int = 1440

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' existing = {
  name: systemTopicName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: topic
  name: 'blob-created-to-function'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionAppHostName}/runtime/webhooks/blobs?functionName=${functionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${inputContainerName}/blobs/'
      // Only the calls that finish a blob: a block blob committed whole or by block list, and a
      // Data Lake file flushed with close. Not CopyBlob's start nor partial appends.
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: [
            'PutBlob'
            'PutBlockList'
            'FlushWithClose'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: identityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = subscription.name
