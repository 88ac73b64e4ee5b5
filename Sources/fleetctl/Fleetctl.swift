import ArgumentParser

@main
struct Fleetctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleetctl",
        abstract: "Manage BitFleet models and fleets of binary-neural-network devices.",
        discussion: """
        Examples:
          fleetctl model inspect Models/fashion-mnist/bnn-cnn.bnn
          fleetctl model run model.bnn --input x.npy --output y.npy
          fleetctl model bench model.bnn --threads 2 --runs 50 --json
        """,
        subcommands: [ModelCommand.self]
    )
}

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect, run and benchmark .bnn model files.",
        subcommands: [InspectCommand.self, RunCommand.self, BenchCommand.self, ConvertCommand.self, SynthesizeCommand.self]
    )
}
