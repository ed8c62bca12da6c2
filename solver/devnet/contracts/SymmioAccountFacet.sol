// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./SymmioTypes.sol";
import {SymmioBase} from "./SymmioBase.sol";
import {LibSignatures} from "./LibSignatures.sol";

interface IERC20Minimal {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// Second half of the LocalSymmio diamond: admin, deposits/allocations and every view.
/// LocalSymmio's fallback delegatecalls here, so these functions run on LocalSymmio's storage
/// (same SymmioBase layout); calling this contract directly touches its own, unused, storage.
contract SymmioAccountFacet is SymmioBase {
    // =========================================================================================
    // Admin
    // =========================================================================================

    function setCollateral(address collateral_) external onlyOwner {
        collateral = collateral_;
        emit SetCollateral(collateral_);
    }

    function setFeeCollector(address feeCollector_) external onlyOwner {
        _feeCollector = feeCollector_;
    }

    function setMuonIds(uint256 muonAppId, address validGateway, PublicKey calldata publicKey) external onlyOwner {
        require(publicKey.x != 0 && publicKey.x < LibSignatures.HALF_Q && publicKey.parity <= 1, "Admin: Invalid public key");
        _muonAppId = muonAppId;
        _validGateway = validGateway;
        _muonPublicKey = publicKey;
        emit SetMuonIds(muonAppId, validGateway, publicKey.x, publicKey.parity);
    }

    function setMuonConfig(uint256 upnlValidTime, uint256 priceValidTime) external onlyOwner {
        _upnlValidTime = upnlValidTime;
        _priceValidTime = priceValidTime;
        emit SetMuonConfig(upnlValidTime, priceValidTime);
    }

    function registerPartyB(address partyB) external onlyOwner {
        _isPartyB[partyB] = true;
        emit RegisterPartyB(partyB);
    }

    function setPendingQuotesValidLength(uint256 value) external onlyOwner {
        _pendingQuotesValidLength = value;
        emit SetPendingQuotesValidLength(value);
    }

    function setBalanceLimitPerUser(uint256 value) external onlyOwner {
        _balanceLimitPerUser = value;
        emit SetBalanceLimitPerUser(value);
    }

    function addSymbol(
        uint256 id,
        string calldata name,
        uint256 minAcceptableQuoteValue,
        uint256 minAcceptablePortionLF,
        uint256 tradingFee,
        uint256 maxLeverage
    ) external onlyOwner {
        require(id != 0 && symbols[id].symbolId == 0, "Admin: Symbol exists");
        symbols[id] = Symbol(id, name, true, minAcceptableQuoteValue, minAcceptablePortionLF, tradingFee, maxLeverage);
        emit AddSymbol(id, name);
    }

    function setSymbolValidationState(uint256 id, bool isValid) external onlyOwner {
        require(symbols[id].symbolId != 0, "Admin: Invalid symbol");
        symbols[id].isValid = isValid;
    }

    function setPauseFlags(bool globalPaused_, bool partyAActionsPaused_, bool partyBActionsPaused_) external onlyOwner {
        _globalPaused = globalPaused_;
        _partyAActionsPaused = partyAActionsPaused_;
        _partyBActionsPaused = partyBActionsPaused_;
        emit SetPauseFlags(globalPaused_, partyAActionsPaused_, partyBActionsPaused_);
    }

    /// Test hook: mark a partyA as in liquidation (reduce-only paths); nothing else is modelled.
    function setLiquidationStatus(address partyA, bool status) external onlyOwner {
        _liquidationStatus[partyA] = status;
    }

    // =========================================================================================
    // Accounts
    // =========================================================================================

    function deposit(uint256 amount) external whenNotGlobalPaused {
        _deposit(msg.sender, amount);
    }

    function depositFor(address user, uint256 amount) external whenNotGlobalPaused {
        _deposit(user, amount);
    }

    function withdraw(uint256 amount) external whenNotGlobalPaused {
        _withdraw(msg.sender, amount);
    }

    /// Debits the sender, pays `user` (MultiAccount uses it to pay the account's owner).
    function withdrawTo(address user, uint256 amount) external whenNotGlobalPaused {
        _withdraw(user, amount);
    }

    function allocate(uint256 amount) external whenPartyAActionsNotPaused notLiquidatedPartyA(msg.sender) {
        _allocate(amount);
    }

    function depositAndAllocate(uint256 amount) external whenPartyAActionsNotPaused notLiquidatedPartyA(msg.sender) {
        _deposit(msg.sender, amount);
        _allocate(amount);
    }

    function deallocate(uint256 amount, SingleUpnlSig calldata upnlSig)
        external
        whenPartyAActionsNotPaused
        notLiquidatedPartyA(msg.sender)
    {
        require(_allocatedA[msg.sender] >= amount, "AccountFacet: Insufficient allocated balance");
        _verifyPartyAUpnl(upnlSig, msg.sender);
        require(_availableA(msg.sender, upnlSig.upnl) >= int256(amount), "AccountFacet: partyA will be liquidated");
        _allocatedA[msg.sender] -= amount;
        _balanceOf[msg.sender] += amount;
        emit DeallocatePartyA(msg.sender, amount, _allocatedA[msg.sender]);
        emit BalanceChangePartyA(msg.sender, amount, BalanceChangeType.DEALLOCATE);
    }

    function allocateForPartyB(uint256 amount, address partyA) external whenPartyBActionsNotPaused onlyPartyB {
        require(_balanceOf[msg.sender] >= amount, "PartyBFacet: Insufficient balance");
        _balanceOf[msg.sender] -= amount;
        _allocatedB[msg.sender][partyA] += amount;
        emit AllocateForPartyB(msg.sender, partyA, amount);
        emit BalanceChangePartyB(msg.sender, partyA, amount, BalanceChangeType.ALLOCATE);
    }

    function deallocateForPartyB(uint256 amount, address partyA, SingleUpnlSig calldata upnlSig)
        external
        whenPartyBActionsNotPaused
        onlyPartyB
    {
        require(_allocatedB[msg.sender][partyA] >= amount, "PartyBFacet: Insufficient allocated balance");
        _verifyPartyBUpnl(upnlSig, msg.sender, partyA);
        require(
            _availableB(msg.sender, partyA, upnlSig.upnl) >= int256(amount), "PartyBFacet: PartyB will be insolvent"
        );
        _allocatedB[msg.sender][partyA] -= amount;
        _balanceOf[msg.sender] += amount;
        emit DeallocateForPartyB(msg.sender, partyA, amount);
        emit BalanceChangePartyB(msg.sender, partyA, amount, BalanceChangeType.DEALLOCATE);
    }

    function _deposit(address user, uint256 amount) private {
        require(collateral != address(0), "AccountFacet: Collateral is not set");
        require(IERC20Minimal(collateral).transferFrom(msg.sender, address(this), amount), "AccountFacet: Transfer failed");
        _balanceOf[user] += amount;
        emit Deposit(msg.sender, user, amount);
    }

    function _withdraw(address to, uint256 amount) private {
        require(_balanceOf[msg.sender] >= amount, "AccountFacet: Insufficient balance");
        _balanceOf[msg.sender] -= amount;
        require(IERC20Minimal(collateral).transfer(to, amount), "AccountFacet: Transfer failed");
        emit Withdraw(msg.sender, to, amount);
    }

    function _allocate(uint256 amount) private {
        require(_balanceOf[msg.sender] >= amount, "AccountFacet: Insufficient balance");
        _balanceOf[msg.sender] -= amount;
        uint256 allocated = _allocatedA[msg.sender] + amount;
        require(allocated <= _balanceLimitPerUser, "AccountFacet: Allocated balance limit reached");
        _allocatedA[msg.sender] = allocated;
        emit AllocatePartyA(msg.sender, amount, allocated);
        emit BalanceChangePartyA(msg.sender, amount, BalanceChangeType.ALLOCATE);
    }

    // =========================================================================================
    // Views
    // =========================================================================================

    // ---- configuration ----------------------------------------------------------------------
    function owner() external view returns (address) {
        return _owner;
    }

    function feeCollector() external view returns (address) {
        return _feeCollector;
    }

    function pauseFlags() external view returns (bool globalPaused, bool partyAActionsPaused, bool partyBActionsPaused) {
        return (_globalPaused, _partyAActionsPaused, _partyBActionsPaused);
    }

    function pendingQuotesValidLength() external view returns (uint256) {
        return _pendingQuotesValidLength;
    }

    function balanceLimitPerUser() external view returns (uint256) {
        return _balanceLimitPerUser;
    }

    function isPartyB(address user) external view returns (bool) {
        return _isPartyB[user];
    }

    function liquidationStatus(address partyA) external view returns (bool) {
        return _liquidationStatus[partyA];
    }

    // ---- balances and nonces ---------------------------------------------------------------
    function balanceOf(address user) external view returns (uint256) {
        return _balanceOf[user];
    }

    function allocatedBalanceOfPartyA(address partyA) external view returns (uint256) {
        return _allocatedA[partyA];
    }

    function allocatedBalanceOfPartyB(address partyB, address partyA) external view returns (uint256) {
        return _allocatedB[partyB][partyA];
    }

    function nonceOfPartyA(address partyA) external view returns (uint256) {
        return _nonceA[partyA];
    }

    function nonceOfPartyB(address partyB, address partyA) external view returns (uint256) {
        return _nonceB[partyB][partyA];
    }

    // ---- quotes ------------------------------------------------------------------------------

    function getQuote(uint256 quoteId) external view returns (Quote memory) {
        return quotes[quoteId];
    }

    /// The LAST issued quote id (the name is historical).
    function getNextQuoteId() external view returns (uint256) {
        return lastId;
    }

    function getQuoteCloseId(uint256 quoteId) external view returns (uint256) {
        return closeIds[quoteId];
    }

    function getPartyAPendingQuotes(address partyA) external view returns (uint256[] memory) {
        return partyAPendingQuotes[partyA];
    }

    function getPartyBPendingQuotes(address partyB, address partyA) external view returns (uint256[] memory) {
        return partyBPendingQuotes[partyB][partyA];
    }

    function getPartyAOpenPositions(address partyA, uint256 start, uint256 size) external view returns (Quote[] memory) {
        return _slice(partyAOpenPositions[partyA], start, size);
    }

    function getPartyBOpenPositions(address partyB, address partyA, uint256 start, uint256 size)
        external
        view
        returns (Quote[] memory)
    {
        return _slice(partyBOpenPositions[partyB][partyA], start, size);
    }

    function partyAPositionsCount(address partyA) external view returns (uint256) {
        return partyAOpenPositions[partyA].length;
    }

    function partyBPositionsCount(address partyB, address partyA) external view returns (uint256) {
        return partyBOpenPositions[partyB][partyA].length;
    }

    function lockedBalancesOfPartyA(address partyA) external view returns (LockedValues memory) {
        return lockedA[partyA];
    }

    function pendingLockedBalancesOfPartyA(address partyA) external view returns (LockedValues memory) {
        return pendingLockedA[partyA];
    }

    function lockedBalancesOfPartyB(address partyB, address partyA) external view returns (LockedValues memory) {
        return lockedB[partyB][partyA];
    }

    function pendingLockedBalancesOfPartyB(address partyB, address partyA) external view returns (LockedValues memory) {
        return pendingLockedB[partyB][partyA];
    }

    function getSymbol(uint256 symbolId) external view returns (Symbol memory) {
        return symbols[symbolId];
    }

    function getCollateral() external view returns (address) {
        return collateral;
    }

    function getMuonIds() external view returns (uint256 muonAppId, PublicKey memory muonPublicKey, address validGateway) {
        return (_muonAppId, _muonPublicKey, _validGateway);
    }

    function getMuonConfig() external view returns (uint256 upnlValidTime, uint256 priceValidTime) {
        return (_upnlValidTime, _priceValidTime);
    }

    /// Pre-flight check of an oracle signature; reverts like the trading functions do.
    function verifyMuonTSSAndGateway(bytes32 hash, SchnorrSign calldata sign, bytes calldata gatewaySignature)
        external
        view
    {
        _verifyTSSAndGateway(hash, sign, gatewaySignature);
    }
}
