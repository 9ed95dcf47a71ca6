// Command gt-apiserver is a small, self-contained Kubernetes API server for
// GreenThread's controller integration tests. It serves what the controller
// needs from a cluster, and nothing else:
//
//   - CustomResourceDefinitions and custom resources (with watches,
//     server-side apply, the status and scale subresources, CEL rules),
//     through the stock k8s.io/apiextensions-apiserver library;
//   - discovery: /apis (listing the CRDs' groups), /apis/<group>[/<version>],
//     aggregated discovery, and an empty /api (there is no core group);
//   - /version, /readyz, /healthz, /livez, /openapi/v3.
//
// It leaves out what needs a whole control plane: no core/v1 informers (so no
// kube-apiserver to delegate to), no admission plugins, no priority and
// fairness, no RBAC. Authentication is by client certificate, verified
// against --client-ca-file; every authenticated user may do anything.
//
// Built by scripts/apiserver.sh in GOPATH mode against Debian's Go source
// packages (golang-k8s-apiextensions-apiserver-dev and its dependencies).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"

	"github.com/spf13/pflag"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	crdoptions "k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// The etcd prefix under which CRDs and custom resources are stored.
const etcdPrefix = "/registry/greenthread-test"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "gt-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	serverRun := genericoptions.NewServerRunOptions()
	recommended := genericoptions.NewRecommendedOptions(
		etcdPrefix,
		apiserver.Codecs.LegacyCodec(v1beta1.SchemeGroupVersion, v1.SchemeGroupVersion),
	)
	// Each of these would need a real kube-apiserver behind this one (to
	// delegate authentication and authorization to, to watch core/v1 objects
	// for admission, to read FlowSchemas): switch them off. Nil options are
	// skipped by AddFlags, Validate and ApplyTo.
	recommended.Authentication = nil
	recommended.Authorization = nil
	recommended.CoreAPI = nil
	recommended.Admission = nil
	recommended.Features.EnablePriorityAndFairness = false
	apiEnablement := genericoptions.NewAPIEnablementOptions()

	fs := pflag.NewFlagSet("gt-apiserver", pflag.ContinueOnError)
	serverRun.AddUniversalFlags(fs)
	recommended.AddFlags(fs)
	apiEnablement.AddFlags(fs)
	clientCAFile := fs.String("client-ca-file", "",
		"PEM bundle of the CAs whose client certificates are accepted (the certificate's CN is the user name).")
	// klog's flags (-v and friends), for debugging the server itself.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *clientCAFile == "" {
		return errors.New("--client-ca-file is required: client certificates are the only way in")
	}

	// Settle the component's versions and feature gates, as the stock
	// command does before running.
	if err := serverRun.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := serverRun.Complete(); err != nil {
		return err
	}
	var errs []error
	errs = append(errs, serverRun.Validate()...)
	errs = append(errs, recommended.Validate()...)
	errs = append(errs, apiEnablement.Validate(apiserver.Scheme)...)
	if err := utilerrors.NewAggregate(errs); err != nil {
		return err
	}

	config, err := newConfig(serverRun, recommended, apiEnablement, *clientCAFile)
	if err != nil {
		return err
	}
	completed := config.Complete()
	// The stock server switches generic discovery off, because inside
	// kube-apiserver the aggregator serves /apis. Alone, it must serve it
	// itself (clients such as kube-rs's Discovery read it first).
	completed.GenericConfig.EnableDiscovery = true
	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	serveEmptyLegacyAPI(server.GenericAPIServer)
	listCRDGroups(server)
	ctx := genericapiserver.SetupSignalContext()
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// newConfig builds the apiextensions server's configuration like the stock
// command does, except for what needs a core/v1 client, and with our own
// authentication and authorization.
func newConfig(
	serverRun *genericoptions.ServerRunOptions,
	recommended *genericoptions.RecommendedOptions,
	apiEnablement *genericoptions.APIEnablementOptions,
	clientCAFile string,
) (*apiserver.Config, error) {
	// Without --tls-cert-file, serve with a self-signed certificate for the
	// loopback address (written under --cert-dir).
	if err := recommended.SecureServing.MaybeDefaultWithSelfSignedCerts(
		"localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("creating self-signed certificates: %w", err)
	}

	serverConfig := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := serverRun.ApplyTo(&serverConfig.Config); err != nil {
		return nil, err
	}
	if err := recommended.ApplyTo(serverConfig); err != nil {
		return nil, err
	}
	if err := apiEnablement.ApplyTo(&serverConfig.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return nil, err
	}

	// Authentication: a client certificate signed by the given CA. Handing
	// the CA to the serving config makes the TLS handshake ask for one.
	caPEM, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, err
	}
	clientCA, err := dynamiccertificates.NewStaticCAContent("client-ca", caPEM)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", clientCAFile, err)
	}
	serverConfig.Authentication.Authenticator = x509.NewDynamic(clientCA.VerifyOptions, x509.CommonNameUserConversion)
	if err := serverConfig.Authentication.ApplyClientCert(clientCA, serverConfig.SecureServing); err != nil {
		return nil, err
	}
	// Authorization: any authenticated user may do anything (there is no
	// RBAC to evaluate). Unauthenticated requests are still refused, since no
	// anonymous authenticator is configured.
	serverConfig.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	// The server's own controllers (naming, establishing, finalizing CRDs)
	// call it back through the loopback client, with a random bearer token:
	// accept that token too.
	genericapiserver.AuthorizeClientBearerToken(serverConfig.LoopbackClientConfig,
		&serverConfig.Authentication, &serverConfig.Authorization)

	// OpenAPI v3 for the built-in apiextensions types; server-side apply
	// builds its type converter from it.
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))

	return &apiserver.Config{
		GenericConfig: serverConfig,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: crdoptions.NewCRDRESTOptionsGetter(
				*recommended.Etcd, serverConfig.ResourceTransformers, serverConfig.StorageObjectCountTracker),
			// Conversion webhooks would be addressed by Service; there are
			// no Services here.
			ServiceResolver: noServices{},
			AuthResolverWrapper: webhook.NewDefaultAuthenticationInfoResolverWrapper(
				nil, nil, serverConfig.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}, nil
}

// serveEmptyLegacyAPI answers /api (the core group's discovery) with no
// versions: there is no core/v1 here, but clients that walk discovery expect
// the document rather than a 404.
func serveEmptyLegacyAPI(s *genericapiserver.GenericAPIServer) {
	body, _ := json.Marshal(map[string]any{
		"kind":                       "APIVersions",
		"versions":                   []string{},
		"serverAddressByClientCIDRs": []any{},
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	s.Handler.NonGoRestfulMux.Handle("/api", handler)
	s.Handler.NonGoRestfulMux.Handle("/api/", handler)
}

// listCRDGroups keeps the groups of established CRDs in the unaggregated
// /apis list. Inside kube-apiserver the aggregator lists them (through
// APIService objects); the CRD server itself only serves /apis/<group> and
// the aggregated form.
func listCRDGroups(crds *apiserver.CustomResourceDefinitions) {
	manager := crds.GenericAPIServer.DiscoveryGroupManager
	informer := crds.Informers.Apiextensions().V1().CustomResourceDefinitions()
	var mu sync.Mutex
	listed := map[string]bool{} // the groups this function added
	resync := func() {
		mu.Lock()
		defer mu.Unlock()
		all, err := informer.Lister().List(labels.Everything())
		if err != nil {
			klog.ErrorS(err, "listing CRDs for discovery")
			return
		}
		versions := map[string]map[string]bool{}
		for _, crd := range all {
			if !apihelpers.IsCRDConditionTrue(crd, v1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served {
					if versions[crd.Spec.Group] == nil {
						versions[crd.Spec.Group] = map[string]bool{}
					}
					versions[crd.Spec.Group][v.Name] = true
				}
			}
		}
		for group, set := range versions {
			names := make([]string, 0, len(set))
			for name := range set {
				names = append(names, name)
			}
			// Kubernetes' version order (v2 > v1 > v1beta1); the first is preferred.
			sort.Slice(names, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0
			})
			apiGroup := metav1.APIGroup{Name: group}
			for _, name := range names {
				apiGroup.Versions = append(apiGroup.Versions,
					metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + name, Version: name})
			}
			apiGroup.PreferredVersion = apiGroup.Versions[0]
			manager.AddGroup(apiGroup)
			listed[group] = true
		}
		for group := range listed {
			if versions[group] == nil {
				manager.RemoveGroup(group)
				delete(listed, group)
			}
		}
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { resync() },
		UpdateFunc: func(any, any) { resync() },
		DeleteFunc: func(any) { resync() },
	})
	if err != nil {
		klog.ErrorS(err, "watching CRDs for discovery")
	}
}

// noServices resolves no Service: conversion webhooks that name one fail
// with a clear error instead of a nil lister.
type noServices struct{}

func (noServices) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return nil, fmt.Errorf("service %s/%s:%d: this test API server has no Services", namespace, name, port)
}
